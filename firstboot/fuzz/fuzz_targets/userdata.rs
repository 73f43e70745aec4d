//! Arbitrary bytes as /var/lib/cloud/instance/user-data.txt: reading (gzip, MIME multipart,
//! YAML with its limits) and validating every key must never panic, hang or exhaust memory,
//! and every refusal must be one line per error, bounded as a person sees them.
#![no_main]

use firstboot::{Precedence, Sources};
use libfuzzer_sys::fuzz_target;

fn one_line_each(errors: &[firstboot::ConfigError]) {
    assert!(!errors.is_empty());
    for e in errors {
        let line = e.to_string();
        assert!(!line.contains('\n'), "multi-line error: {line:?}");
    }
    let shown = firstboot::input::error::bounded_lines(errors);
    assert!(shown.len() <= firstboot::input::error::MAX_LINES);
    for line in &shown {
        assert!(line.chars().count() <= firstboot::input::error::MAX_LINE && !line.contains('\n'));
    }
}

fuzz_target!(|data: &[u8]| {
    match Sources::parse(data, None) {
        Ok(sources) => {
            let now = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_764_000_000);
            if let Err(errors) = sources.validate(Precedence::UserData, now) {
                one_line_each(&errors);
            }
        }
        Err(errors) => one_line_each(&errors),
    }
});
