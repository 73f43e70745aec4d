//! What the machine itself says, for IP mode and the host name: the public IPv4 address and
//! meta-data's `local-hostname` from cloud-init's instance data
//! (`/run/cloud-init/instance-data.json`), and the address of the default route's interface.
//!
//! Where each cloud's public address lives in instance-data.json (cloud-init writes its
//! datasource's crawled metadata under `ds` with the keys as the cloud spells them; `cloud-init
//! query` and Jinja templates show them with `_` for `-`, and both spellings are read):
//! - **EC2** (`DataSourceEc2` crawls into `_crawled_metadata`): `ds["meta-data"]["public-ipv4"]`,
//!   absent when the instance has no public address;
//! - **Azure** (`DataSourceAzure` merges IMDS into its metadata as `imds`):
//!   `ds.meta_data.imds.network.interface[].ipv4.ipAddress[].publicIpAddress`, often `""`
//!   (a Standard SKU public IP is not reported by IMDS);
//! - **GCE**: nowhere. `DataSourceGCE` reads only `instance/id`, `zone`, `hostname` and the
//!   attributes from the metadata server, never the access config's external IP, and the
//!   guest's own interface has only the internal address (Google NATs it 1:1). So on GCE,
//!   IP mode falls back to the default route's address, which is the internal one: give such
//!   a machine a `dns_name`. Asking the metadata server ourselves would add a network call to
//!   every boot for one cloud; not done.
//!
//! Any other datasource (NoCloud, OpenStack, ...) has no public address for us either: the
//! default route's interface address is used, found by "connecting" a UDP socket to the
//! default gateway (no packet is sent; the kernel picks the source address it would use),
//! with the gateway read from `/proc/net/route`. Only on the running system (`--root /`);
//! tests give the address with `APPLIANCE_FIRSTBOOT_TEST_ADDRESS` (see [`crate::hooks`]).

use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;

use serde_json::Value;

use crate::hooks::TestHooks;

/// cloud-init's instance data (JSON), relative to the root.
pub const INSTANCE_DATA: &str = "run/cloud-init/instance-data.json";

/// The address to serve on in IP mode, as far as it is known.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IpAddress {
    /// Not looked up (`check` before launch): the instance's address at boot.
    #[default]
    AtBoot,
    /// Found, and where.
    Found {
        address: Ipv4Addr,
        source: &'static str,
    },
    /// None found: why (one line).
    NotFound(String),
}

/// What the machine says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Machine {
    pub address: IpAddress,
    /// Meta-data's `local-hostname`, if any.
    pub local_hostname: Option<String>,
}

impl Machine {
    /// Reads instance data under `root` and, when it names no public address, the default
    /// route's address (see the module doc). A missing or unreadable instance-data.json is
    /// no instance data.
    pub fn read(root: &Path, hooks: &TestHooks) -> Machine {
        let data: Value = std::fs::read(crate::tree::Tree::new(root).path(INSTANCE_DATA))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let address = match public_ipv4(&data) {
            Some((address, source)) => IpAddress::Found { address, source },
            None => match hooks.address {
                Some(address) => IpAddress::Found {
                    address,
                    source: "the test's address",
                },
                None if root == Path::new("/") => match default_route_address(root) {
                    Ok(address) => IpAddress::Found {
                        address,
                        source: "the default route's interface",
                    },
                    Err(why) => IpAddress::NotFound(why),
                },
                None => IpAddress::NotFound(format!(
                    "no public IPv4 in {INSTANCE_DATA}, and {} is not the running system",
                    root.display()
                )),
            },
        };
        Machine {
            address,
            local_hostname: local_hostname(&data),
        }
    }
}

/// `ds`'s metadata mapping: `meta-data` as crawled, or `meta_data` (with the spelling of
/// `cloud-init query`).
fn meta_data(data: &Value) -> Option<&Value> {
    let ds = data.get("ds")?;
    ds.get("meta-data").or_else(|| ds.get("meta_data"))
}

/// `key` of `map`, spelt with `-` or with `_`.
fn either<'v>(map: &'v Value, key: &str) -> Option<&'v Value> {
    map.get(key).or_else(|| map.get(key.replace('-', "_")))
}

/// The public IPv4 address the cloud's metadata gives, and which cloud's key it was.
pub fn public_ipv4(data: &Value) -> Option<(Ipv4Addr, &'static str)> {
    let md = meta_data(data)?;
    let usable = |v: &Value| {
        v.as_str()
            .and_then(|s| s.trim().parse::<Ipv4Addr>().ok())
            .filter(|a| !a.is_unspecified() && !a.is_loopback() && !a.is_broadcast())
    };
    if let Some(address) = either(md, "public-ipv4").and_then(usable) {
        return Some((address, "EC2's public-ipv4"));
    }
    let interfaces = md
        .get("imds")
        .and_then(|imds| imds.pointer("/network/interface"))
        .and_then(Value::as_array)?;
    interfaces
        .iter()
        .filter_map(|i| i.pointer("/ipv4/ipAddress").and_then(Value::as_array))
        .flatten()
        .find_map(|a| a.get("publicIpAddress").and_then(usable))
        .map(|address| (address, "Azure's publicIpAddress"))
}

/// Meta-data's `local-hostname`.
pub fn local_hostname(data: &Value) -> Option<String> {
    either(meta_data(data)?, "local-hostname")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .filter(|s| !s.trim().is_empty())
}

/// The default gateway of `route` (`/proc/net/route`'s text): the first up route with
/// destination and mask 0.
pub fn default_gateway(route: &str) -> Option<Ipv4Addr> {
    route.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let hex = |i: usize| fields.get(i).and_then(|f| u32::from_str_radix(f, 16).ok());
        let (dest, gateway, flags, mask) = (hex(1)?, hex(2)?, hex(3)?, hex(7)?);
        // RTF_UP; the kernel prints the addresses in host (little-endian) byte order.
        (dest == 0 && mask == 0 && flags & 1 == 1 && gateway != 0)
            .then(|| Ipv4Addr::from(gateway.swap_bytes()))
    })
}

/// The address of the default route's interface on the running system.
fn default_route_address(root: &Path) -> Result<Ipv4Addr, String> {
    let route = std::fs::read_to_string(root.join("proc/net/route"))
        .map_err(|e| format!("reading /proc/net/route: {e}"))?;
    let gateway = default_gateway(&route).ok_or_else(|| {
        format!("no public IPv4 in {INSTANCE_DATA}, and no default route (/proc/net/route)")
    })?;
    let socket =
        UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| format!("a UDP socket: {e}"))?;
    // A UDP connect sends nothing: it only has the kernel choose the route and source.
    socket
        .connect((gateway, 9))
        .map_err(|e| format!("the route to the default gateway {gateway}: {e}"))?;
    match socket.local_addr() {
        Ok(std::net::SocketAddr::V4(a)) if !a.ip().is_unspecified() => Ok(*a.ip()),
        Ok(other) => Err(format!("no IPv4 source address for {gateway}: {other}")),
        Err(e) => Err(format!("the source address for {gateway}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_from_proc_net_route() {
        let route =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            ens3\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            ens3\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(default_gateway(route), Some(Ipv4Addr::new(10, 0, 2, 2)));
        let down = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
            ens3\t00000000\t0202000A\t0002\t0\t0\t0\t00000000\n";
        assert_eq!(default_gateway(down), None);
        assert_eq!(default_gateway(""), None);
    }
}
