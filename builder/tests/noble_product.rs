//! The Ubuntu 24.04 product (issue 18): profiles/rocketchat-jitsi-noble.toml built with
//! `scripts/build-standin-product` (the vendor payloads stood in: tests/standins/README.md)
//! with the test overlays product.rs adds (`test-report`, `test-acme`), and booted with NoCloud
//! seeds under each firmware a user's hypervisor or cloud gives: OVMF with Secure Boot
//! enforcing (noble's own signed shim, GRUB and kernel: S1 and S5), SeaBIOS (S2) and OVMF
//! without Secure Boot (S6).
//! The scenario steps are product.rs's, shared through common/product.rs; what differs on
//! 24.04 is in its [`NOBLE`] description (Rocket.Chat 9's Jitsi integration is the Marketplace
//! app: no Jitsi_* settings; appliance-rocketchat-jitsi installs the app only for a workspace
//! registered with Rocket.Chat Cloud).
//!
//! Five boots: S1 (the user's own certificate, and a Cloud registration token: the pinned
//! Jitsi app from the stand-in Marketplace, enabled, pointed at the machine, the default
//! video-conference provider; the token nowhere but Rocket.Chat's 0600 environment file) with
//! every check only the product answers
//! (Ubuntu 24.04 on its signed chain, the replica set primary, Rocket.Chat's stored Site_Url,
//! Jitsi Meet's page, noble's Prosody 0.12 running firstboot's configuration with its own
//! `prosodyctl check config` and accepting jicofo's and the videobridge's logins, OpenJDK 17's
//! keystore trusting the auth certificate), then S5 on the same disk (a reboot with the same
//! user-data rewrites nothing); S2 (self-signed, no token: no app, and the unit says how to opt
//! in) under SeaBIOS; S6 (two clones) under OVMF.
//! Every test's name starts with `noble_product_`.

mod common;

use appliance::qemu::Firmware;
use common::guest::*;
use common::product::*;

/// This file's product: Ubuntu 24.04.
const P: &Product = &NOBLE;

#[test]
#[ignore = "builds the noble product with the stand-ins; run by scripts/test"]
fn noble_product_image_is_ubuntu_24_04() {
    P.assert_image_os();
}

/// Scenario 1 (the user's own certificate) under Secure Boot, with the product's own checks
/// and a Rocket.Chat Cloud registration token (the Jitsi app set up); then scenario 5 on the
/// same disk: a reboot with the same user-data rewrites nothing.
#[test]
#[ignore = "builds the noble product with the stand-ins and boots it under QEMU; run by scripts/test"]
fn noble_product_s1_s5_own_certificate_under_secure_boot_then_a_reboot_rewrites_nothing() {
    let pki = Pki::new();
    let cert = pki.issue("meet", &[DNS]);
    let mut guest = Guest::new(P.machine(), &format!("{}-1+5", P.label));
    let instance = format!("iid-{}-s1", P.label);
    let rest = format!(
        "{}  rocketchat_registration_token: {REGISTRATION_TOKEN}\n",
        certificate(&cert)
    );
    let seed = guest.seed(&user_data(DNS, &rest), &instance);
    let boot = guest.boot(&seed);
    assert_services_run(&boot, "success exit=0");
    assert_product_services(P, &boot.reports, &boot.console);
    assert_s1_own_certificate(P, &boot, &pki, &cert);
    // The registration token: the workspace registered, the Jitsi app installed from the
    // (stand-in) Marketplace and pointed at this machine; the secret on no console.
    assert_jitsi_app(P, &boot.reports, true);
    assert!(
        !boot.console.contains(REGISTRATION_TOKEN),
        "the token was echoed"
    );
    assert_eq!(boot.reports.get("rc-token"), "env=600 root journal=0");
    let before = Written::of(&boot);
    drop(boot);
    s5_reboot_with_the_same_user_data(&mut guest, &seed, &instance, &before);
}

/// Scenario 2 on 24.04, under SeaBIOS (the product's BIOS boot: GRUB's i386-pc core in the
/// BIOS boot partition): no certificate given: self-signed, covering every name served.
#[test]
#[ignore = "builds the noble product with the stand-ins and boots it under QEMU; run by scripts/test"]
fn noble_product_s2_self_signed_certificate_under_seabios() {
    s2_self_signed_certificate(P, Firmware::Bios);
}

/// Scenario 6 on 24.04, under OVMF without Secure Boot: two machines from one image share no
/// identity or secret.
#[test]
#[ignore = "builds the noble product with the stand-ins and boots it under QEMU; run by scripts/test"]
fn noble_product_s6_clones_share_no_identity_or_secret_under_ovmf() {
    s6_clones_share_no_identity_or_secret(P, Firmware::Uefi { secure_boot: false });
}
