//! What the container's process is: the image config's entrypoint, cmd,
//! environment, working directory and user, with EVE's overrides applied
//! the way Docker applies `--entrypoint`, a command, `-e`, `-w` and `-u`
//! (a new entrypoint drops the image's cmd unless a cmd is given too).

use crate::{config::Overrides, image::RunConfig};

/// The PATH a process gets when the image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub argv: Vec<String>,
    /// `NAME=value`, in order, names unique.
    pub env: Vec<String>,
    pub working_dir: String,
    /// `user[:group]`; empty is root.
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    #[error("neither the image nor the app config says what to run (no entrypoint or cmd)")]
    NothingToRun,
    #[error("environment entry {0:?} is not NAME=value")]
    Env(String),
    #[error("working directory {0:?} is not absolute")]
    WorkingDir(String),
}

fn name_of(entry: &str) -> Option<&str> {
    entry
        .split_once('=')
        .map(|(n, _)| n)
        .filter(|n| !n.is_empty())
}

/// The process from the image's `image` config and EVE's `overrides`.
pub fn process(image: &RunConfig, overrides: &Overrides) -> Result<Process, ProcessError> {
    let entrypoint = overrides
        .entrypoint
        .clone()
        .or_else(|| image.entrypoint.clone())
        .unwrap_or_default();
    let cmd = match (&overrides.cmd, &overrides.entrypoint) {
        (Some(cmd), _) => cmd.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => image.cmd.clone().unwrap_or_default(),
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(ProcessError::NothingToRun);
    }
    let mut env: Vec<String> = Vec::new();
    for entry in image.env.iter().flatten().chain(&overrides.env) {
        let name = name_of(entry).ok_or_else(|| ProcessError::Env(entry.clone()))?;
        match env.iter_mut().find(|e| name_of(e) == Some(name)) {
            Some(existing) => *existing = entry.clone(),
            None => env.push(entry.clone()),
        }
    }
    if !env.iter().any(|e| name_of(e) == Some("PATH")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    let working_dir = overrides
        .working_dir
        .clone()
        .or_else(|| image.working_dir.clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !working_dir.starts_with('/') {
        return Err(ProcessError::WorkingDir(working_dir));
    }
    let user = overrides
        .user
        .clone()
        .or_else(|| image.user.clone())
        .unwrap_or_default();
    Ok(Process {
        argv,
        env,
        working_dir,
        user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    fn image() -> RunConfig {
        RunConfig {
            entrypoint: Some(strings(&["/bin/httpd", "-f"])),
            cmd: Some(strings(&["-p", "8080"])),
            env: Some(strings(&["PATH=/bin", "A=image"])),
            working_dir: Some("/www".into()),
            user: Some("www".into()),
        }
    }

    #[test]
    fn the_image_alone() {
        let p = process(&image(), &Overrides::default()).unwrap();
        assert_eq!(p.argv, ["/bin/httpd", "-f", "-p", "8080"]);
        assert_eq!(p.env, ["PATH=/bin", "A=image"]);
        assert_eq!(p.working_dir, "/www");
        assert_eq!(p.user, "www");
    }

    #[test]
    fn overrides_win_as_dockers_do() {
        let o = Overrides {
            cmd: Some(strings(&["-p", "9090"])),
            env: strings(&["A=eve", "B=new"]),
            working_dir: Some("/tmp".into()),
            user: Some("0:0".into()),
            ..Overrides::default()
        };
        let p = process(&image(), &o).unwrap();
        assert_eq!(p.argv, ["/bin/httpd", "-f", "-p", "9090"]);
        assert_eq!(p.env, ["PATH=/bin", "A=eve", "B=new"]);
        assert_eq!((p.working_dir.as_str(), p.user.as_str()), ("/tmp", "0:0"));
        let new_entry = Overrides {
            entrypoint: Some(strings(&["/bin/sh"])),
            ..Overrides::default()
        };
        assert_eq!(process(&image(), &new_entry).unwrap().argv, ["/bin/sh"]);
    }

    #[test]
    fn defaults_and_refusals() {
        let bare = RunConfig {
            cmd: Some(strings(&["/app"])),
            ..RunConfig::default()
        };
        let p = process(&bare, &Overrides::default()).unwrap();
        assert_eq!(p.env, [DEFAULT_PATH]);
        assert_eq!((p.working_dir.as_str(), p.user.as_str()), ("/", ""));
        assert_eq!(
            process(&RunConfig::default(), &Overrides::default()),
            Err(ProcessError::NothingToRun)
        );
        let bad_env = Overrides {
            env: strings(&["=x"]),
            ..Overrides::default()
        };
        assert!(matches!(
            process(&bare, &bad_env),
            Err(ProcessError::Env(_))
        ));
        let relative = Overrides {
            working_dir: Some("www".into()),
            ..Overrides::default()
        };
        assert!(matches!(
            process(&bare, &relative),
            Err(ProcessError::WorkingDir(_))
        ));
    }
}
