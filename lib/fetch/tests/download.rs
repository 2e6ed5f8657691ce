//! Downloads against scripted servers on loopback: resume and its
//! validation, restarts, hostile servers, redirects, proxies, retries.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use evehttp::Target;
use fetch::retry::{Backoff, Clock, Failure, with_retries};
use fetch::testing::{MemSink, Reply, Seen, StdTransport, TestServer};
use fetch::{
    BlobSink, ConnectError, Credentials, Download, FetchError, Proxy, SinkError, Validator,
    download,
};

fn file(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i * 7) as u8) ^ seed).collect()
}

/// A file server that honours Range and If-Range like a real one.
fn range_reply(req: &Seen, data: &[u8], etag: Option<&str>) -> Reply {
    let mut headers: Vec<(&str, String)> = Vec::new();
    if let Some(e) = etag {
        headers.push(("ETag", e.to_string()));
    }
    let if_range_ok = match (req.header("if-range"), etag) {
        (Some(asked), Some(have)) => asked == have,
        (Some(_), None) => false,
        (None, _) => true,
    };
    let range = req
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|s| s.parse::<usize>().ok());
    let (status, body) = match range {
        Some(start) if if_range_ok && start >= data.len() => {
            headers.push(("Content-Range", format!("bytes */{}", data.len())));
            (416, &[][..])
        }
        Some(start) if if_range_ok => {
            headers.push((
                "Content-Range",
                format!("bytes {start}-{}/{}", data.len() - 1, data.len()),
            ));
            (206, &data[start..])
        }
        _ => (200, data),
    };
    let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    Reply::full(status, &h, body)
}

fn req(port: u16, path: &str, expected: Option<u64>) -> Download {
    Download {
        url: Target::parse_url(&format!("http://127.0.0.1:{port}{path}")).unwrap(),
        authorization: None,
        expected_size: expected,
        max_size: 1 << 24,
        max_redirects: 3,
    }
}

fn get(d: &Download, sink: &mut MemSink, v: &mut Validator) -> Result<fetch::Outcome, FetchError> {
    download(
        &mut StdTransport::default(),
        None,
        sink,
        d,
        v,
        &mut |_, _| {},
    )
}

#[test]
fn whole_file_then_nothing_left_to_resume() {
    let data = file(100_000, 1);
    let d2 = data.clone();
    let server = TestServer::start(move |r| range_reply(r, &d2, Some("\"v1\"")));
    let d = req(server.port, "/images/a.img", Some(100_000));
    let (mut sink, mut v) = (MemSink::default(), Validator::default());
    let mut calls = 0;
    let out = download(
        &mut StdTransport::default(),
        None,
        &mut sink,
        &d,
        &mut v,
        &mut |staged, total| {
            calls += 1;
            assert_eq!(total, Some(100_000));
            assert!(staged <= 100_000);
        },
    )
    .unwrap();
    assert_eq!(
        (out.total, out.resumed_from, out.fetched),
        (100_000, 0, 100_000)
    );
    assert!(calls > 1);
    assert_eq!(sink.data, data);
    assert_eq!(
        v,
        Validator {
            etag: Some("\"v1\"".into()),
            total: Some(100_000)
        }
    );
    let seen = server.requests();
    assert_eq!(seen[0].target(), "GET /images/a.img");
    assert_eq!(seen[0].header("range"), None);
    // Everything staged and the size known: no request at all.
    let out = get(&d, &mut sink, &mut v).unwrap();
    assert_eq!(out.fetched, 0);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn resumes_with_range_and_if_range() {
    let data = file(50_000, 2);
    let d2 = data.clone();
    let server = TestServer::start(move |r| range_reply(r, &d2, Some("\"abc\"")));
    let mut sink = MemSink {
        data: data[..20_000].to_vec(),
        ..MemSink::default()
    };
    let mut v = Validator {
        etag: Some("\"abc\"".into()),
        total: Some(50_000),
    };
    let out = get(&req(server.port, "/f", Some(50_000)), &mut sink, &mut v).unwrap();
    assert_eq!((out.resumed_from, out.fetched), (20_000, 30_000));
    assert_eq!(sink.data, data);
    assert_eq!(sink.rewinds, 0);
    let seen = &server.requests()[0];
    assert_eq!(seen.header("range"), Some("bytes=20000-"));
    assert_eq!(seen.header("if-range"), Some("\"abc\""));
}

#[test]
fn a_changed_file_or_a_server_ignoring_range_restarts_cleanly() {
    // New ETag: If-Range fails, the server sends the whole new file.
    let new = file(30_000, 3);
    let n2 = new.clone();
    let server = TestServer::start(move |r| range_reply(r, &n2, Some("\"new\"")));
    let mut sink = MemSink {
        data: file(10_000, 9),
        ..MemSink::default()
    };
    let mut v = Validator {
        etag: Some("\"old\"".into()),
        total: Some(40_000),
    };
    let out = get(&req(server.port, "/f", None), &mut sink, &mut v).unwrap();
    assert_eq!((out.resumed_from, out.fetched), (0, 30_000));
    assert_eq!((sink.data == new, sink.rewinds), (true, 1));
    assert_eq!(v.etag.as_deref(), Some("\"new\""));

    // A server that ignores Range (always 200).
    let data = file(20_000, 4);
    let d2 = data.clone();
    let server = TestServer::start(move |_| Reply::full(200, &[], &d2));
    let mut sink = MemSink {
        data: data[..5000].to_vec(),
        ..MemSink::default()
    };
    let out = get(
        &req(server.port, "/f", Some(20_000)),
        &mut sink,
        &mut Validator::default(),
    )
    .unwrap();
    assert_eq!(
        (out.resumed_from, sink.data == data, sink.rewinds),
        (0, true, 1)
    );

    // No ETag: the total length is the check; a different total restarts.
    let data = file(25_000, 5);
    let d2 = data.clone();
    let server = TestServer::start(move |r| range_reply(r, &d2, None));
    let mut sink = MemSink {
        data: file(8000, 6),
        ..MemSink::default()
    };
    let mut v = Validator {
        etag: None,
        total: Some(24_000),
    };
    let out = get(&req(server.port, "/f", None), &mut sink, &mut v).unwrap();
    assert_eq!((out.resumed_from, sink.data == data), (0, true));
    let seen = server.requests();
    assert_eq!(seen.len(), 2, "a ranged request, then the whole file");
    assert_eq!(seen[1].header("range"), None);
}

#[test]
fn already_complete_is_answered_416_and_accepted() {
    let data = file(4000, 7);
    let d2 = data.clone();
    let server = TestServer::start(move |r| range_reply(r, &d2, Some("\"e\"")));
    let mut sink = MemSink {
        data: data.clone(),
        ..MemSink::default()
    };
    let mut v = Validator {
        etag: Some("\"e\"".into()),
        total: Some(4000),
    };
    let out = get(&req(server.port, "/f", None), &mut sink, &mut v).unwrap();
    assert_eq!((out.total, out.fetched), (4000, 0));
}

/// A fake monotonic clock that never sleeps for real.
struct FakeClock(u64);

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.0
    }
    fn sleep_until_ms(&mut self, deadline: u64) {
        self.0 = deadline;
    }
}

#[test]
fn a_cut_connection_resumes_and_fetches_only_the_rest() {
    let data = file(200_000, 8);
    let d2 = data.clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let server = TestServer::start(move |r| {
        if c2.fetch_add(1, Ordering::SeqCst) == 0 {
            // The first answer stops after 70000 body bytes.
            let Reply::Raw(full) = range_reply(r, &d2, Some("\"x\"")) else {
                unreachable!()
            };
            let head = full.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            Reply::Raw(full[..head + 70_000].to_vec())
        } else {
            range_reply(r, &d2, Some("\"x\""))
        }
    });
    let d = req(server.port, "/big", Some(200_000));
    let mut sink = MemSink::default();
    let mut v = Validator::default();
    let mut clock = FakeClock(0);
    let out = with_retries(
        &mut clock,
        Backoff::default(),
        || 0,
        FetchError::is_retryable,
        || {
            let before = sink.data.len();
            get(&d, &mut sink, &mut v).map_err(|error| Failure {
                error,
                progressed: sink.data.len() > before,
            })
        },
    )
    .unwrap();
    assert_eq!(sink.data, data);
    assert_eq!((out.resumed_from, out.fetched), (70_000, 130_000));
    assert!(
        out.fetched < 200_000,
        "the resume fetched less than the blob"
    );
    assert_eq!(clock.0, 500, "one backoff delay (half of 1 s, no jitter)");
    let seen = server.requests();
    assert_eq!(seen[1].header("range"), Some("bytes=70000-"));
}

#[test]
fn hostile_servers_get_clear_errors() {
    // Content-Length lies about the expected size.
    let server = TestServer::start(|_| Reply::full(200, &[], &[7u8; 100]));
    let e = get(
        &req(server.port, "/f", Some(50)),
        &mut MemSink::default(),
        &mut Validator::default(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        FetchError::LengthMismatch {
            expected: 50,
            got: 100
        }
    );
    assert!(!e.is_retryable());

    // Content-Length larger than what is sent: truncated, retryable.
    let server = TestServer::start(|_| {
        Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nshort".to_vec())
    });
    let mut sink = MemSink::default();
    let e = get(
        &req(server.port, "/f", None),
        &mut sink,
        &mut Validator::default(),
    )
    .unwrap_err();
    assert_eq!(e, FetchError::Http(evehttp::HttpError::ConnectionClosed));
    assert!(e.is_retryable());
    assert_eq!(sink.data, b"short");

    // An endless body (read until close, chunked) stops at the limit.
    for head in [
        &b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        let chunked = head.windows(7).any(|w| w == b"chunked");
        let chunk = if chunked {
            b"1000\r\n"
                .iter()
                .chain(&[b'z'; 4096])
                .chain(b"\r\n")
                .copied()
                .collect()
        } else {
            vec![b'z'; 4096]
        };
        let head = head.to_vec();
        let server = TestServer::start(move |_| Reply::Endless {
            head: head.clone(),
            chunk: chunk.clone(),
        });
        let mut d = req(server.port, "/f", None);
        d.max_size = 100_000;
        let mut sink = MemSink::default();
        let e = get(&d, &mut sink, &mut Validator::default()).unwrap_err();
        assert!(
            matches!(
                e,
                FetchError::TooLarge { limit: 100_000 }
                    | FetchError::Http(evehttp::HttpError::BodyTooLarge)
            ),
            "{e}"
        );
        assert!(sink.data.len() <= 100_000);
    }

    // A 206 that does not start where we asked.
    let server = TestServer::start(|_| {
        Reply::full(206, &[("Content-Range", "bytes 0-9/10")], b"0123456789")
    });
    let mut sink = MemSink {
        data: b"01234".to_vec(),
        ..MemSink::default()
    };
    let e = get(
        &req(server.port, "/f", None),
        &mut sink,
        &mut Validator::default(),
    )
    .unwrap_err();
    assert_eq!(e, FetchError::BadContentRange);

    // Statuses.
    for (status, want) in [
        (404, FetchError::NotFound),
        (401, FetchError::Unauthorized(401)),
        (403, FetchError::Forbidden),
        (503, FetchError::Server(503)),
        (418, FetchError::UnexpectedStatus(418)),
    ] {
        let server = TestServer::start(move |_| Reply::full(status, &[], b""));
        let e = get(
            &req(server.port, "/f", None),
            &mut MemSink::default(),
            &mut Validator::default(),
        )
        .unwrap_err();
        assert_eq!(e, want);
        assert_eq!(e.is_retryable(), status == 503);
    }

    // A full sink: the blob store's reserve.
    let server = TestServer::start(|_| Reply::full(200, &[], &[1u8; 50_000]));
    let mut sink = MemSink {
        room: Some(20_000),
        ..MemSink::default()
    };
    let e = get(
        &req(server.port, "/f", None),
        &mut sink,
        &mut Validator::default(),
    )
    .unwrap_err();
    assert_eq!(e, FetchError::Sink(SinkError::NoRoom));
    assert!(!e.is_retryable());
}

#[test]
fn redirects_are_bounded_and_credentials_stay_home() {
    let data = file(3000, 9);
    let d2 = data.clone();
    let storage = TestServer::start(move |_| Reply::full(200, &[], &d2));
    let storage_port = storage.port;
    let origin = TestServer::start(move |r| match r.target() {
        "GET /a" => Reply::full(302, &[("Location", "/b")], b""),
        "GET /b" => Reply::full(
            307,
            &[(
                "Location",
                &format!("http://127.0.0.1:{storage_port}/blob?sig=1"),
            )],
            b"",
        ),
        "GET /loop" => Reply::full(301, &[("Location", "/loop")], b""),
        _ => Reply::full(302, &[], b""),
    });
    let mut d = req(origin.port, "/a", Some(3000));
    d.authorization = Some(
        Credentials {
            username: "u".into(),
            password: "p".into(),
        }
        .basic_header(),
    );
    let mut sink = MemSink::default();
    get(&d, &mut sink, &mut Validator::default()).unwrap();
    assert_eq!(sink.data, data);
    let at_origin = origin.requests();
    assert!(
        at_origin
            .iter()
            .all(|r| r.header("authorization") == Some("Basic dTpw"))
    );
    let at_storage = storage.requests();
    assert_eq!(at_storage[0].target(), "GET /blob?sig=1");
    assert_eq!(
        at_storage[0].header("authorization"),
        None,
        "credentials never leave the datastore"
    );

    let e = get(
        &req(origin.port, "/loop", None),
        &mut MemSink::default(),
        &mut Validator::default(),
    )
    .unwrap_err();
    assert_eq!(e, FetchError::TooManyRedirects);
    let e = get(
        &req(origin.port, "/nowhere", None),
        &mut MemSink::default(),
        &mut Validator::default(),
    )
    .unwrap_err();
    assert_eq!(e, FetchError::BadRedirect);
}

#[test]
fn https_never_redirects_to_http() {
    let server = TestServer::start(|r| match r.target() {
        "GET /down" => Reply::full(302, &[("Location", "http://127.0.0.1:1/f")], b""),
        _ => Reply::full(200, &[], b"ok"),
    });
    let mut d = req(server.port, "/down", None);
    d.url = Target::parse_url(&format!("https://127.0.0.1:{}/down", server.port)).unwrap();
    let mut tls = StdTransport {
        pretend_tls: true,
        ..StdTransport::default()
    };
    let e = download(
        &mut tls,
        None,
        &mut MemSink::default(),
        &d,
        &mut Validator::default(),
        &mut |_, _| {},
    );
    assert_eq!(e, Err(FetchError::InsecureRedirect));
    // Without TLS in the transport, https says so plainly.
    let e = download(
        &mut StdTransport::default(),
        None,
        &mut MemSink::default(),
        &d,
        &mut Validator::default(),
        &mut |_, _| {},
    );
    assert_eq!(e, Err(FetchError::Connect(ConnectError::Unsupported)));
}

/// A CONNECT proxy on loopback: checks credentials, then pipes bytes.
fn start_proxy(expect_auth: Option<&'static str>) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let seen = seen2.clone();
            thread::spawn(move || {
                let mut client = client;
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && client.read(&mut b).unwrap_or(0) == 1 {
                    head.push(b[0]);
                }
                let text = String::from_utf8_lossy(&head).to_string();
                seen.lock().unwrap().push(text.clone());
                let authorized = expect_auth
                    .is_none_or(|a| text.contains(&format!("Proxy-Authorization: {a}\r\n")));
                let target = text.split_whitespace().nth(1).unwrap_or("").to_string();
                if !authorized {
                    let _ = client.write_all(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n",
                    );
                    return;
                }
                let Ok(upstream) = TcpStream::connect(&target) else {
                    return;
                };
                let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                let mut upstream = upstream;
                thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut u2);
                });
                let _ = std::io::copy(&mut upstream, &mut client);
            });
        }
    });
    (port, seen)
}

#[test]
fn through_a_connect_proxy_with_credentials_and_exceptions() {
    let data = file(10_000, 10);
    let d2 = data.clone();
    let server = TestServer::start(move |r| range_reply(r, &d2, None));
    let (proxy_port, proxy_seen) = start_proxy(Some("Basic cHg6c2VjcmV0"));
    let mut proxy = Proxy {
        host: "127.0.0.1".into(),
        port: proxy_port,
        credentials: Some(Credentials {
            username: "px".into(),
            password: "secret".into(),
        }),
        exceptions: vec![],
    };
    let d = req(server.port, "/via-proxy", Some(10_000));
    let mut transport = StdTransport::default();
    let mut sink = MemSink::default();
    download(
        &mut transport,
        Some(&proxy),
        &mut sink,
        &d,
        &mut Validator::default(),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(sink.data, data);
    assert_eq!(transport.connections, [format!("127.0.0.1:{proxy_port}")]);
    assert!(
        proxy_seen.lock().unwrap()[0]
            .starts_with(&format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n", server.port))
    );

    // Wrong credentials: the proxy's refusal is the error.
    proxy.credentials = Some(Credentials {
        username: "px".into(),
        password: "wrong".into(),
    });
    let e = download(
        &mut StdTransport::default(),
        Some(&proxy),
        &mut MemSink::default(),
        &d,
        &mut Validator::default(),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert_eq!(e, FetchError::Connect(ConnectError::ProxyRefused(407)));

    // An exception goes direct.
    proxy.exceptions = vec!["127.0.0.1".into()];
    let mut transport = StdTransport::default();
    download(
        &mut transport,
        Some(&proxy),
        &mut MemSink::default(),
        &d,
        &mut Validator::default(),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(
        transport.connections,
        [format!("127.0.0.1:{}", server.port)]
    );
}

#[test]
fn the_sink_contract_is_the_blob_stores() {
    let mut sink = MemSink::default();
    sink.write(0, b"abc").unwrap();
    assert_eq!(sink.write(5, b"x"), Err(SinkError::Rejected));
    sink.write(1, b"Z").unwrap();
    assert_eq!(sink.staged().unwrap(), 2);
    assert_eq!(sink.data, b"aZ");
}
