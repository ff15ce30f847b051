//! Role → uid: the identity a dbus link's connections carry on the bus.
//!
//! A numeric role is that uid. A name is looked up in the provider's
//! `/etc/passwd` (read inside the provider's root, so a provider cannot
//! point us at a host file). Anything not found is `nobody` (65534), as
//! upstream does; a hosted-bus link's allocated `uid` wins over all of it.

/// uid and gid of `nobody`.
pub const NOBODY: (u32, u32) = (65534, 65534);

/// Largest passwd file we read (a provider could offer an endless one).
pub const MAX_PASSWD: usize = 1 << 20;

/// Resolve `role` against the text of a passwd file; `None` if unknown.
/// An empty role is unknown: a line with an empty name (which a provider
/// can write) must not give it an identity.
pub fn lookup(role: &str, passwd: &str) -> Option<(u32, u32)> {
    if role.is_empty() {
        return None;
    }
    let by_uid = role.parse::<u32>().ok();
    for line in passwd.lines() {
        let mut f = line.split(':');
        let (Some(name), Some(_pw), Some(uid), Some(gid)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let (Ok(uid), Ok(gid)) = (uid.parse::<u32>(), gid.parse::<u32>()) else {
            continue;
        };
        if by_uid == Some(uid) || (by_uid.is_none() && name == role) {
            return Some((uid, gid));
        }
    }
    // A numeric role needs no passwd entry; its gid then equals the uid.
    by_uid.map(|u| (u, u))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        nobody:x:65534:65534:nobody:/:/bin/false\n\
        operator:x:1001:1001::/home/operator:/bin/sh\n\
        garbage line\n";

    #[test]
    fn names_numbers_and_unknowns() {
        assert_eq!(lookup("root", PASSWD), Some((0, 0)));
        assert_eq!(lookup("operator", PASSWD), Some((1001, 1001)));
        assert_eq!(lookup("1001", PASSWD), Some((1001, 1001)));
        assert_eq!(lookup("4242", PASSWD), Some((4242, 4242)));
        assert_eq!(lookup("any", PASSWD), None);
        assert_eq!(lookup("", PASSWD), None);
        // A prefix of a name is not that name.
        assert_eq!(lookup("oper", PASSWD), None);
        // Found by fuzzing: a line with an empty name gave the empty role
        // its uid.
        assert_eq!(lookup("", ":x:0:0::/:/bin/sh\n"), None);
    }
}
