//! OVA: a tar of the OVF descriptor, the manifest and the streamOptimized VMDK, in that order
//! (the OVF 1.x spec requires the descriptor first and the manifest right after it, so
//! importers can check files while streaming). The manifest lists SHA256 digests, which
//! VMware 6.5+ and VirtualBox verify.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// The guest OS as CIM names it in the OVF `OperatingSystemSection`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OvfOs {
    Ubuntu64,
    Debian64,
    Linux64,
}

impl OvfOs {
    pub fn from_os_id(id: &str) -> Self {
        match id {
            "ubuntu" => OvfOs::Ubuntu64,
            "debian" => OvfOs::Debian64,
            _ => OvfOs::Linux64,
        }
    }

    fn cim(self) -> (u32, &'static str) {
        match self {
            OvfOs::Ubuntu64 => (94, "Ubuntu 64-bit"),
            OvfOs::Debian64 => (96, "Debian 64-bit"),
            OvfOs::Linux64 => (101, "Linux 64-bit"),
        }
    }
}

/// The OVF descriptor for one VM with `disk_file` (of `disk_file_size` bytes) as its disk of
/// `capacity` bytes: 2 vCPUs, 4 GiB of memory (what the appliance needs), one VMXNET3 NIC.
pub fn descriptor(
    name: &str,
    disk_file: &str,
    disk_file_size: u64,
    capacity: u64,
    os: OvfOs,
) -> String {
    let (os_id, os_text) = os.cim();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="{disk_file}" ovf:id="file1" ovf:size="{disk_file_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="VM Network">
      <Description>The VM Network network</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="{os_id}">
      <Info>The kind of installed guest operating system</Info>
      <Description>{os_text}</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of Virtual CPUs</rasd:Description>
        <rasd:ElementName>2 virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>2</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>4096MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>4096</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI Controller</rasd:Description>
        <rasd:ElementName>SCSI Controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard Disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#
    )
}

fn member_header(path: &str, size: u64, mtime: u64) -> Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

/// What the OVA says of the appliance (the export's context, without the export module's
/// types: this module is a leaf).
pub struct OvaInfo<'a> {
    /// Base name of the artifacts.
    pub name: &'a str,
    /// The VMDK's file name: its descriptor names itself so (see vmdk.rs), and so does the
    /// OVA's member.
    pub disk_name: String,
    pub disk_size: u64,
    pub os: OvfOs,
    /// Timestamp of the archive's members.
    pub mtime: u64,
}

/// Writes the OVA for the VMDK at `vmdk` (whose SHA-256 is `vmdk_sha`) into `out`.
pub fn write_ova(vmdk: &Path, vmdk_sha: &str, ctx: &OvaInfo, out: &File) -> Result<()> {
    let disk_name = &ctx.disk_name;
    let vmdk_size = vmdk
        .metadata()
        .with_context(|| format!("reading {}", vmdk.display()))?
        .len();
    let ovf = descriptor(ctx.name, disk_name, vmdk_size, ctx.disk_size, ctx.os);
    let ovf_name = format!("{}.ovf", ctx.name);
    let mf = format!(
        "SHA256({ovf_name})= {}\nSHA256({disk_name})= {vmdk_sha}\n",
        hex::encode(Sha256::digest(ovf.as_bytes()))
    );
    let mut tar = tar::Builder::new(BufWriter::new(out));
    for (name, body) in [
        (&ovf_name, ovf.as_bytes()),
        (&format!("{}.mf", ctx.name), mf.as_bytes()),
    ] {
        tar.append(&member_header(name, body.len() as u64, ctx.mtime)?, body)?;
    }
    let disk = File::open(vmdk).with_context(|| format!("opening {}", vmdk.display()))?;
    tar.append(&member_header(disk_name, vmdk_size, ctx.mtime)?, disk)
        .context("adding the VMDK")?;
    tar.into_inner()?.flush().context("writing the OVA")?;
    Ok(())
}
