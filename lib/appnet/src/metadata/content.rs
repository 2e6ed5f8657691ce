//! What the metadata server answers, after EVE's msrv
//! (`pkg/pillar/cmd/msrv/handlers.go`): the same paths, status codes and
//! JSON shapes. The caller is known by its source address, which
//! anti-spoofing guarantees is its own.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use super::http::{Method, Request, Response};
use super::json::{self, Value};
use crate::config::{AppMetadata, MetadataKind, NodeInfo};

/// The metadata server's own address.
pub const METADATA_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// The app behind a caller's address.
pub(crate) struct Caller<'a> {
    pub uuid: &'a str,
    pub name: &'a str,
    pub metadata: &'a AppMetadata,
}

/// Everything an answer may need.
pub(crate) struct Context<'a> {
    pub remote: (Ipv4Addr, u16),
    pub app: Option<Caller<'a>>,
    pub external_ip: Option<Ipv4Addr>,
    pub node: &'a NodeInfo,
}

const JSON: &str = "application/json";
const TEXT: &str = "text/plain";

pub(crate) fn respond(request: &Request, ctx: &Context<'_>) -> Response {
    let known = matches!(
        request.path.as_str(),
        "/eve/v1/network.json"
            | "/eve/v1/external_ipv4"
            | "/eve/v1/hostname"
            | "/eve/v1/app/info.json"
    ) || request.path == "/openstack"
        || request.path.starts_with("/openstack/");
    if !known {
        return Response::error(404, "404 page not found");
    }
    if request.method != Method::Get {
        return Response::new(405, TEXT, Vec::new());
    }
    match request.path.as_str() {
        "/eve/v1/network.json" => network(ctx),
        "/eve/v1/external_ipv4" => match ctx.external_ip {
            Some(ip) => Response::new(200, TEXT, format!("{ip}\n")),
            None => Response::new(204, TEXT, Vec::new()),
        },
        "/eve/v1/hostname" => match &ctx.app {
            Some(app) => Response::new(200, TEXT, format!("{}\n", app.uuid)),
            None => Response::new(204, TEXT, Vec::new()),
        },
        "/eve/v1/app/info.json" => app_info(ctx),
        _ => openstack(&request.path, ctx),
    }
}

fn network(ctx: &Context<'_>) -> Response {
    let uuid = ctx.app.as_ref().map_or("", |a| a.uuid);
    let caller = format!("{}:{}", ctx.remote.0, ctx.remote.1);
    let external = ctx.external_ip.map(|ip| ip.to_string()).unwrap_or_default();
    let node = ctx.node;
    let body = json::object(&[
        ("app-instance-uuid", Value::Str(uuid)),
        ("caller-ip", Value::Str(&caller)),
        ("device-name", Value::Str(&node.device_name)),
        ("device-uuid", Value::Str(&node.device_uuid)),
        ("enterprise-id", Value::Str(&node.enterprise_id)),
        ("enterprise-name", Value::Str(&node.enterprise_name)),
        ("external-ipv4", Value::Str(&external)),
        ("hostname", Value::Str(uuid)),
        ("project-name", Value::Str(&node.project_name)),
        ("project-uuid", Value::Str(&node.project_uuid)),
    ]);
    Response::new(200, JSON, body)
}

fn app_info(ctx: &Context<'_>) -> Response {
    let Some(app) = &ctx.app else {
        return Response::new(200, JSON, "not found");
    };
    let blobs = &app.metadata.blobs;
    let list = if blobs.is_empty() {
        String::from("null")
    } else {
        let items: Vec<String> = blobs
            .iter()
            .map(|b| {
                let url = format!("http://{METADATA_ADDR}/eve/app-custom-blobs/{}", b.name);
                json::object(&[
                    ("CustomMeta", Value::Str(&b.custom_meta)),
                    ("DownloadURL", Value::Str(&url)),
                ])
            })
            .collect();
        format!("[{}]", items.join(","))
    };
    Response::new(200, JSON, json::object(&[("AppBlobs", Value::Raw(&list))]))
}

fn openstack(path: &str, ctx: &Context<'_>) -> Response {
    let Some(app) = &ctx.app else {
        let message = format!("no AppNetworkStatus for {}", ctx.remote.0);
        return Response::error(501, &message);
    };
    if app.metadata.kind != MetadataKind::OpenStack {
        return Response::error(404, &format!("no MetaDataOpenStack for {}", app.uuid));
    }
    let file = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    match file {
        "openstack" => Response::new(200, TEXT, "latest\n"),
        "meta_data.json" => {
            let keys = &app.metadata.ssh_keys;
            let entries: Vec<String> = keys
                .iter()
                .enumerate()
                .map(|(i, key)| {
                    let data = format!("{key}\n");
                    let name = format!("key-{i}");
                    json::object(&[
                        ("data", Value::Str(&data)),
                        ("name", Value::Str(&name)),
                        ("type", Value::Str("ssh")),
                    ])
                })
                .collect();
            let keys_json = if entries.is_empty() {
                String::from("null")
            } else {
                format!("[{}]", entries.join(","))
            };
            // Go writes a map's keys sorted as strings: key-10 before key-2.
            let mut named: Vec<(String, String)> = keys
                .iter()
                .enumerate()
                .map(|(i, key)| (format!("key-{i}"), format!("{key}\n")))
                .collect();
            named.sort();
            let mut public = String::from("{");
            for (i, (name, key)) in named.iter().enumerate() {
                if i > 0 {
                    public.push(',');
                }
                json::string(&mut public, name);
                public.push(':');
                json::string(&mut public, key);
            }
            public.push('}');
            let body = json::object(&[
                ("hostname", Value::Str(app.name)),
                ("keys", Value::Raw(&keys_json)),
                ("launch_index", Value::Int(0)),
                ("name", Value::Str(app.name)),
                ("public_keys", Value::Raw(&public)),
                ("uuid", Value::Str(app.uuid)),
            ]);
            Response::new(200, JSON, body)
        }
        "network_data.json" => Response::new(200, JSON, r#"{"networks":[],"services":[]}"#),
        "user_data" => Response::new(200, "text/yaml", app.metadata.user_data.clone()),
        "vendor_data.json" => Response::new(200, JSON, "{}"),
        _ => Response::error(404, "not found"),
    }
}
