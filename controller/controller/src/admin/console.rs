//! The web console: fleet overview, a page per device, the onboarding
//! allow-list, and deploying, stopping and starting apps. Plain HTML
//! rendered here, one stylesheet and one small script served from this
//! binary (no CDN, nothing fetched from elsewhere).

mod chart;
mod pages;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};

use super::session::COOKIE_NAME;
use super::{Admin, api, token_matches};
use crate::domain::NewApp;

const CSS: &str = include_str!("console/console.css");
const JS: &str = include_str!("console/console.js");
/// Largest form accepted (an onboarding certificate fits easily).
const MAX_FORM: usize = 64 << 10;

/// What a console request produces.
enum Page {
    Html(StatusCode, String),
    Redirect(String),
}

fn respond(page: Page, cookie: Option<String>) -> Response<Full<Bytes>> {
    let mut resp = Response::builder().header(CACHE_CONTROL, "no-store");
    if let Some(cookie) = cookie {
        resp = resp.header(SET_COOKIE, cookie);
    }
    let (resp, body) = match page {
        Page::Html(status, html) => (
            resp.status(status)
                .header(CONTENT_TYPE, "text/html; charset=utf-8"),
            html,
        ),
        Page::Redirect(to) => (
            resp.status(StatusCode::SEE_OTHER).header(LOCATION, to),
            String::new(),
        ),
    };
    resp.body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn asset(kind: &str, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .header(CONTENT_TYPE, kind)
        .header(CACHE_CONTROL, "max-age=300")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("static response parts are valid")
}

/// One form field.
fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// Handles a request for anything outside `/api/`.
pub(super) async fn handle(admin: &Arc<Admin>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    match (&method, path.as_str()) {
        (&Method::GET, "/console/static/console.css") => return asset("text/css", CSS),
        (&Method::GET, "/console/static/console.js") => {
            return asset("text/javascript", JS);
        }
        (&Method::GET, "/" | "/console") => {
            return respond(Page::Redirect("/console/".into()), None);
        }
        _ => {}
    }
    let session = admin.sessions.of_request(&req);
    // The query string's pairs, then the form body's.
    let mut form = api::query(req.uri().query());
    match Limited::new(req.into_body(), MAX_FORM).collect().await {
        Ok(body) => form.extend(api::query(std::str::from_utf8(&body.to_bytes()).ok())),
        Err(_) => {
            return respond(
                Page::Html(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    pages::message("Form too large"),
                ),
                None,
            );
        }
    }
    if path == "/console/login" {
        return login(admin, &method, &form);
    }
    let Some((session_id, csrf)) = session else {
        return respond(Page::Redirect("/console/login".into()), None);
    };
    if method == Method::POST && !token_matches(field(&form, "csrf").as_bytes(), csrf.as_bytes()) {
        return respond(
            Page::Html(
                StatusCode::FORBIDDEN,
                pages::message("Stale form: reload the page"),
            ),
            None,
        );
    }
    if (&method, path.as_str()) == (&Method::POST, "/console/logout") {
        admin.sessions.remove(&session_id);
        let expired = format!("{COOKIE_NAME}=; Path=/; Max-Age=0");
        return respond(Page::Redirect("/console/login".into()), Some(expired));
    }
    let ctl = admin.ctl.clone();
    let page = tokio::task::spawn_blocking(move || route(&ctl, &method, &path, &form, &csrf))
        .await
        .unwrap_or_else(|e| {
            Page::Html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::message(&format!("console failed: {e}")),
            )
        });
    respond(page, None)
}

fn login(admin: &Admin, method: &Method, form: &[(String, String)]) -> Response<Full<Bytes>> {
    if *method != Method::POST {
        return respond(Page::Html(StatusCode::OK, pages::login(None)), None);
    }
    if !token_matches(
        field(form, "token").trim().as_bytes(),
        admin.token.as_bytes(),
    ) {
        return respond(
            Page::Html(StatusCode::UNAUTHORIZED, pages::login(Some("Wrong token"))),
            None,
        );
    }
    let id = admin.sessions.create();
    let secure = if admin.https { "; Secure" } else { "" };
    let cookie = format!("{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Strict{secure}");
    respond(Page::Redirect("/console/".into()), Some(cookie))
}

/// The pages and actions behind the login; runs on a blocking thread.
fn route(
    ctl: &crate::domain::Controller,
    method: &Method,
    path: &str,
    form: &[(String, String)],
    csrf: &str,
) -> Page {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let result = match (method, segs.as_slice()) {
        (&Method::GET, ["console"]) => {
            let page = field(form, "page").parse().unwrap_or(0);
            pages::fleet(ctl, page, csrf).map(|html| Page::Html(StatusCode::OK, html))
        }
        (&Method::GET, ["console", "device", uuid]) => {
            pages::device(ctl, uuid, csrf, field(form, "note")).map(|html| match html {
                Some(html) => Page::Html(StatusCode::OK, html),
                None => Page::Html(StatusCode::NOT_FOUND, pages::message("No such device")),
            })
        }
        (&Method::POST, ["console", "device", uuid, "deploy"]) => {
            let app = NewApp {
                name: field(form, "name").trim().to_owned(),
                memory_mib: field(form, "memory_mib").parse().unwrap_or(256),
                vcpus: field(form, "vcpus").parse().unwrap_or(1),
            };
            ctl.deploy_app(uuid, &app)
                .map(|v| back_to(uuid, &format!("{} deployed (config version {v})", app.name)))
                .map_err(|e| e.to_string())
        }
        (
            &Method::POST,
            [
                "console",
                "device",
                uuid,
                "app",
                name,
                action @ ("stop" | "start"),
            ],
        ) => {
            let name = api::percent_decode(name);
            ctl.set_app_active(uuid, &name, *action == "start")
                .map(|v| back_to(uuid, &format!("{name}: {action} (config version {v})")))
                .map_err(|e| e.to_string())
        }
        (&Method::GET, ["console", "onboard"]) => {
            pages::onboard(ctl, csrf).map(|html| Page::Html(StatusCode::OK, html))
        }
        (&Method::POST, ["console", "onboard"]) => {
            let serials: Vec<String> = field(form, "serials")
                .split([',', ' ', '\n'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            ctl.onboard_add(field(form, "cert_pem"), &serials)
                .map(|_| Page::Redirect("/console/onboard".into()))
                .map_err(|e| e.to_string())
        }
        (&Method::POST, ["console", "onboard", id, "remove"]) => match id.parse::<i64>() {
            Ok(id) => ctl
                .store()
                .onboard_remove(id)
                .map(|_| Page::Redirect("/console/onboard".into()))
                .map_err(|e| e.to_string()),
            Err(_) => Err("onboarding entry ids are numbers".into()),
        },
        _ => Ok(Page::Html(
            StatusCode::NOT_FOUND,
            pages::message("Not found"),
        )),
    };
    result.unwrap_or_else(|e| Page::Html(StatusCode::BAD_REQUEST, pages::message(&e)))
}

fn back_to(uuid: &str, note: &str) -> Page {
    Page::Redirect(format!(
        "/console/device/{uuid}?note={}",
        pages::url_component(note)
    ))
}
