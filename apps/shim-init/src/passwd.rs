//! `user[:group]` to numeric ids through the container's own
//! `/etc/passwd` and `/etc/group`, as container runtimes resolve it: a
//! name must exist; a bare number need not (its group is then 0).

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("user {0:?} is not in the image's /etc/passwd")]
    NoUser(String),
    #[error("group {0:?} is not in the image's /etc/group")]
    NoGroup(String),
}

/// (uid, gid) for `spec` given the image's passwd and group files.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<(u32, u32), UserError> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = |file: &str, key: &str| -> Option<(u32, u32)> {
        file.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let id: u32 = fields.get(2)?.parse().ok()?;
            let gid: u32 = fields.get(3).and_then(|g| g.parse().ok()).unwrap_or(0);
            (fields[0] == key || fields.get(2) == Some(&key)).then_some((id, gid))
        })
    };
    let (uid, primary) = if user.is_empty() {
        (0, 0)
    } else if let Some(found) = entry(passwd, user) {
        found
    } else if let Ok(uid) = user.parse() {
        (uid, 0)
    } else {
        return Err(UserError::NoUser(user.to_string()));
    };
    let gid = match grp {
        None | Some("") => primary,
        Some(g) => match entry(group, g) {
            Some((gid, _)) => gid,
            None => g.parse().map_err(|_| UserError::NoGroup(g.to_string()))?,
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/:/bin/sh\nwww:x:1000:1001:www:/www:/bin/sh\nbroken\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:\n";

    #[test]
    fn names_and_numbers() {
        assert_eq!(resolve("", PASSWD, GROUP), Ok((0, 0)));
        assert_eq!(resolve("www", PASSWD, GROUP), Ok((1000, 1001)));
        assert_eq!(resolve("1000", PASSWD, GROUP), Ok((1000, 1001)));
        assert_eq!(resolve("4242", PASSWD, GROUP), Ok((4242, 0)));
        assert_eq!(resolve("www:staff", PASSWD, GROUP), Ok((1000, 50)));
        assert_eq!(resolve("www:7", PASSWD, GROUP), Ok((1000, 7)));
        assert_eq!(
            resolve("nobody", PASSWD, GROUP),
            Err(UserError::NoUser("nobody".into()))
        );
        assert_eq!(
            resolve("www:wheel", PASSWD, GROUP),
            Err(UserError::NoGroup("wheel".into()))
        );
    }
}
