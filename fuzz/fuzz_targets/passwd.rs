//! Role → uid in a provider's `/etc/passwd` (a file the provider
//! container controls). Input: the role on the first line, the passwd
//! text after it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pv_xconnect::link::dbus::passwd;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (role, file) = text.split_once('\n').unwrap_or((&text, ""));
    if let Some((uid, _gid)) = passwd::lookup(role, file) {
        // A numeric role is that uid; a name resolves only to a line
        // that carries it.
        match role.parse::<u32>() {
            Ok(n) => assert_eq!(uid, n),
            Err(_) => assert!(file
                .lines()
                .any(|l| l.split(':').next() == Some(role) && !role.is_empty())),
        }
    }
});
