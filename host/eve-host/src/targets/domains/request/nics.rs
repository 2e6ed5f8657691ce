//! A domain's NICs: one user-mode NIC with the port maps as loopback
//! forwards, or, for an app on zedrouter's network instances, one NIC per
//! port of the host's switch and nothing else (zedrouter is then the
//! app's only path). The socket of NIC `i` is the `ports` target's
//! `<uuid>.<i>`, derived here from the UUID and the index: a service never
//! names a path.

use std::path::Path;

use domains::spec::{NetBackend, Nic, PortForward};
use hostops::domains::{DomainError, StartRequest};
use hostops::ports::{MAX_NICS, PortName};

use super::bad;
use crate::targets::ports::{MAX_SOCKET_PATH, app_socket};

/// Most port maps.
const MAX_PORT_MAPS: usize = 64;

/// Whether `mac` is `xx:xx:xx:xx:xx:xx` and unicast (the NIC's own
/// address: a multicast one would be refused by zedrouter's anti-spoofing
/// and confuse every switch).
fn unicast_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    let bytes: Option<Vec<u8>> = parts
        .iter()
        .map(|p| {
            (p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u8::from_str_radix(p, 16).ok())
                .flatten()
        })
        .collect();
    bytes.is_some_and(|b| b.len() == 6 && b[0] & 1 == 0 && b.iter().any(|x| *x != 0))
}

/// The NICs of `request`'s domain; `run` is the node's run directory,
/// where the port switch's sockets are.
pub fn nics(run: &Path, request: &StartRequest) -> Result<Vec<Nic>, DomainError> {
    let uuid = &request.uuid;
    if request.nics.is_empty() {
        return Ok(vec![Nic {
            mac: None,
            backend: NetBackend::User {
                forwards: forwards(request)?,
            },
        }]);
    }
    if !request.port_maps.is_empty() {
        return Err(bad(
            uuid,
            "a domain on the port switch has no port maps: zedrouter maps its ports",
        ));
    }
    if request.nics.len() > MAX_NICS as usize {
        return Err(bad(uuid, format!("a domain has at most {MAX_NICS} NICs")));
    }
    request
        .nics
        .iter()
        .zip(0u32..)
        .map(|(nic, index)| {
            if nic.index != index {
                return Err(bad(
                    uuid,
                    format!("NIC {index} is numbered {}: NICs come in order", nic.index),
                ));
            }
            if !unicast_mac(&nic.mac) {
                return Err(bad(
                    uuid,
                    format!(
                        "NIC {index}: {:?} is not a unicast MAC address",
                        nic.mac.chars().take(40).collect::<String>()
                    ),
                ));
            }
            let name = PortName {
                app_uuid: uuid.clone(),
                nic: index,
            }
            .host_name()
            .ok_or_else(|| bad(uuid, format!("NIC {index} names no port")))?;
            let path = app_socket(run, &name);
            if path.as_os_str().len() > MAX_SOCKET_PATH {
                return Err(bad(
                    uuid,
                    format!(
                        "the port socket {} is longer than a unix socket allows",
                        path.display()
                    ),
                ));
            }
            Ok(Nic {
                mac: Some(nic.mac.to_ascii_lowercase()),
                backend: NetBackend::Stream { path },
            })
        })
        .collect()
}

fn forwards(request: &StartRequest) -> Result<Vec<PortForward>, DomainError> {
    if request.port_maps.len() > MAX_PORT_MAPS {
        return Err(bad(&request.uuid, "too many port maps"));
    }
    request
        .port_maps
        .iter()
        .map(|m| {
            let port = |p: u32| u16::try_from(p).ok().filter(|p| *p != 0);
            match (port(m.host_port), port(m.app_port)) {
                (Some(host), Some(guest)) => Ok(PortForward { host, guest }),
                _ => Err(bad(
                    &request.uuid,
                    format!("port map {} -> {}", m.host_port, m.app_port),
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use hostops::domains::{Nic as RequestNic, PortMap};

    use super::*;

    const UUID: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";

    fn request(nics: &[(u32, &str)]) -> StartRequest {
        StartRequest {
            uuid: UUID.into(),
            nics: nics
                .iter()
                .map(|(index, mac)| RequestNic {
                    index: *index,
                    mac: (*mac).into(),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn nics_on_ports_connect_to_the_ports_sockets_only() {
        let run = Path::new("/var/eve/run");
        let nics = nics(
            run,
            &request(&[(0, "02:16:3E:00:00:01"), (1, "02:16:3e:00:00:02")]),
        )
        .unwrap();
        assert_eq!(
            nics,
            [
                Nic {
                    mac: Some("02:16:3e:00:00:01".into()),
                    backend: NetBackend::Stream {
                        path: run.join(format!("ports/{UUID}.0.sock"))
                    },
                },
                Nic {
                    mac: Some("02:16:3e:00:00:02".into()),
                    backend: NetBackend::Stream {
                        path: run.join(format!("ports/{UUID}.1.sock"))
                    },
                },
            ]
        );
        // Without NICs: the user-mode NIC with the forwards.
        let mut plain = request(&[]);
        plain.port_maps = vec![PortMap {
            host_port: 8080,
            app_port: 80,
        }];
        assert_eq!(
            nics_of(&plain),
            Ok(vec![Nic {
                mac: None,
                backend: NetBackend::User {
                    forwards: vec![PortForward {
                        host: 8080,
                        guest: 80
                    }]
                }
            }])
        );
    }

    fn nics_of(request: &StartRequest) -> Result<Vec<Nic>, String> {
        nics(Path::new("/run"), request).map_err(|e| e.detail)
    }

    #[test]
    fn hostile_nics_are_refused() {
        let mut both = request(&[(0, "02:00:00:00:00:01")]);
        both.port_maps = vec![PortMap {
            host_port: 8080,
            app_port: 80,
        }];
        let many: Vec<(u32, &str)> = (0..=MAX_NICS).map(|i| (i, "02:00:00:00:00:01")).collect();
        for bad in [
            both,
            request(&many),
            request(&[(1, "02:00:00:00:00:01")]),
            request(&[(0, "02:00:00:00:00:01"), (0, "02:00:00:00:00:02")]),
            request(&[(0, "01:00:5e:00:00:01")]),
            request(&[(0, "00:00:00:00:00:00")]),
            request(&[(0, "02:00:00:00:00")]),
            request(&[(0, "02:00:00:00:00:01,id=x")]),
            request(&[(0, "02:00:00:00:00:0é")]),
            request(&[(0, "+2:00:00:00:00:01")]),
        ] {
            assert!(nics_of(&bad).is_err(), "{:?}", bad.nics);
        }
        let deep = "/d".repeat(60);
        assert!(nics(Path::new(&deep), &request(&[(0, "02:00:00:00:00:01")])).is_err());
    }
}
