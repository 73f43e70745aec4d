//! `appliance-firstboot`: configures the appliance from cloud-init user-data at first boot.
//!
//! Not built yet (issue 4): this placeholder keeps the workspace's shape and refuses to run,
//! so nothing can mistake it for the real program.

fn main() {
    eprintln!("error: appliance-firstboot is not implemented yet");
    std::process::exit(2);
}
