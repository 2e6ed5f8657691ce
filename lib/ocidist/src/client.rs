//! Talking to one registry: authenticated requests, manifests by tag or
//! digest, the image for a platform, and blobs into a sink.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use evehttp::{Client, HttpError, Method, Request, ResponseHead, Scheme, Target};
use fetch::{BlobSink, Credentials, Download, FetchError, Outcome, Proxy, Transport, Validator};

use crate::auth::{Challenge, parse_challenge, query_escape, token_from};
use crate::manifest::{self, ACCEPT, Descriptor, Kind, Platform, kind_of};
use crate::{Digest, OciError, Reference};

/// Largest token service answer.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;

/// How to reach a registry and what to accept from it.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Speak plain http instead of https (a registry on a local network
    /// or loopback, as in tests).
    pub plain_http: bool,
    /// The datastore's credentials: sent to the token service, or to the
    /// registry itself when it asks for basic auth.
    pub credentials: Option<Credentials>,
    /// A proxy to reach the registry and token service through.
    pub proxy: Option<Proxy>,
    /// Largest manifest or index.
    pub max_manifest_bytes: usize,
    /// Largest blob.
    pub max_blob_bytes: u64,
    /// Redirects followed at most per request.
    pub max_redirects: u8,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            plain_http: false,
            credentials: None,
            proxy: None,
            max_manifest_bytes: 4 << 20,
            max_blob_bytes: 64 << 30,
            max_redirects: 5,
        }
    }
}

/// A manifest or index as received, with the digest of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// sha256 of `bytes`.
    pub digest: Digest,
    /// The media type it was served as.
    pub media_type: String,
    /// The document.
    pub bytes: Vec<u8>,
}

/// An image resolved for one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The index the manifest was chosen from, if the reference named one.
    pub index: Option<Fetched>,
    /// The image manifest.
    pub manifest: Fetched,
    /// Its config blob.
    pub config: Descriptor,
    /// Its layers, bottom first.
    pub layers: Vec<Descriptor>,
}

/// A response whose body (if asked for) is in memory.
struct Answer {
    head: ResponseHead,
    body: Vec<u8>,
}

/// A client of one registry.
pub struct Registry<T: Transport> {
    transport: T,
    scheme: Scheme,
    host: String,
    port: u16,
    options: RegistryOptions,
    /// The `Authorization` value that worked last.
    authorization: Option<String>,
}

impl<T: Transport> Registry<T> {
    /// A client for the registry `reference` names.
    pub fn new(transport: T, reference: &Reference, options: RegistryOptions) -> Self {
        let scheme = if options.plain_http {
            Scheme::Http
        } else {
            Scheme::Https
        };
        let port = reference.port.unwrap_or(match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        });
        Self {
            transport,
            scheme,
            host: reference.host.clone(),
            port,
            options,
            authorization: None,
        }
    }

    /// The transport (tests count its connections).
    pub fn transport(&self) -> &T {
        &self.transport
    }

    fn url(&self, path: &str) -> Target {
        Target {
            scheme: self.scheme,
            host: self.host.clone(),
            port: self.port,
            path: String::from(path),
        }
    }

    /// One request, following redirects; `authorization` goes only to
    /// `url`'s own origin. The body is read (up to `limit`) for 200 only.
    fn exchange(
        &mut self,
        method: Method,
        mut url: Target,
        accept: Option<&str>,
        authorization: Option<&str>,
        limit: usize,
    ) -> Result<Answer, OciError> {
        let origin = (url.scheme, url.host.clone(), url.port);
        let mut redirects = 0u8;
        loop {
            let conn = fetch::connect(
                &mut self.transport,
                self.options.proxy.as_ref(),
                url.scheme,
                &url.host,
                url.port,
            )?;
            let mut client = Client::new(conn, &url.authority())?;
            let mut req = Request::new(method, &url.path)
                .body_limit(limit as u64)
                .close();
            if let Some(a) = accept {
                req = req.header("Accept", a);
            }
            let home = (url.scheme, url.host.clone(), url.port) == origin;
            if let Some(auth) = authorization.filter(|_| home) {
                req = req.header("Authorization", auth);
            }
            let mut resp = client.send(&req)?;
            let status = resp.status();
            if matches!(status, 301 | 302 | 303 | 307 | 308) {
                redirects = redirects.saturating_add(1);
                if redirects > self.options.max_redirects {
                    return Err(OciError::TooManyRedirects);
                }
                url = redirect(&url, resp.head.headers().get_str("location"))?;
                continue;
            }
            let body = if status == 200 && method == Method::Get {
                resp.body.read_to_vec(limit)?
            } else {
                Vec::new()
            };
            return Ok(Answer {
                head: resp.head,
                body,
            });
        }
    }

    /// A request to the registry, authenticating once on a 401.
    fn registry_request(
        &mut self,
        method: Method,
        path: &str,
        accept: Option<&str>,
        repository: &str,
        limit: usize,
    ) -> Result<Answer, OciError> {
        let mut authenticated = false;
        loop {
            let auth = self.authorization.clone();
            let answer = self.exchange(method, self.url(path), accept, auth.as_deref(), limit)?;
            if answer.head.status() != 401 {
                return Ok(answer);
            }
            if authenticated {
                return Err(OciError::Unauthorized);
            }
            let challenge = answer
                .head
                .headers()
                .get_str("www-authenticate")
                .and_then(parse_challenge)
                .ok_or(OciError::BadChallenge)?;
            self.authenticate(challenge, repository)?;
            authenticated = true;
        }
    }

    /// Answers a challenge: basic credentials, or a token from the realm.
    fn authenticate(&mut self, challenge: Challenge, repository: &str) -> Result<(), OciError> {
        let (realm, service, scope) = match challenge {
            Challenge::Basic => {
                let creds = self
                    .options
                    .credentials
                    .as_ref()
                    .ok_or(OciError::Unauthorized)?;
                self.authorization = Some(creds.basic_header());
                return Ok(());
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => (realm, service, scope),
        };
        let mut url = Target::parse_url(&realm).map_err(|_| OciError::BadChallenge)?;
        let scope = scope.unwrap_or_else(|| format!("repository:{repository}:pull"));
        let mut sep = if url.path.contains('?') { '&' } else { '?' };
        for (name, value) in [("service", service), ("scope", Some(scope))] {
            if let Some(v) = value {
                url.path.push(sep);
                url.path.push_str(name);
                url.path.push('=');
                url.path.push_str(&query_escape(&v));
                sep = '&';
            }
        }
        // Credentials never cross plain http unless the registry itself is
        // plain http (a local registry).
        let may_send = url.scheme == Scheme::Https || self.scheme == Scheme::Http;
        let basic = self
            .options
            .credentials
            .as_ref()
            .filter(|_| may_send)
            .map(Credentials::basic_header);
        let answer = self.exchange(Method::Get, url, None, basic.as_deref(), MAX_TOKEN_ANSWER)?;
        let status = answer.head.status();
        if status != 200 {
            return Err(OciError::TokenRefused(status));
        }
        let token = token_from(&answer.body).ok_or(OciError::TokenRefused(status))?;
        self.authorization = Some(format!("Bearer {token}"));
        Ok(())
    }

    /// The manifest or index `reference` (a tag or a digest) names. Its
    /// digest is the sha256 of the bytes; it must equal `expected` when
    /// given, and `Docker-Content-Digest` when the registry sends one.
    pub fn fetch_manifest(
        &mut self,
        repository: &str,
        reference: &str,
        expected: Option<Digest>,
    ) -> Result<Fetched, OciError> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let limit = self.options.max_manifest_bytes;
        let answer = self
            .registry_request(Method::Get, &path, Some(ACCEPT), repository, limit)
            .map_err(|e| match e {
                OciError::Http(HttpError::BodyTooLarge) => OciError::ManifestTooLarge,
                other => other,
            })?;
        match answer.head.status() {
            200 => {}
            404 => return Err(OciError::NotFound),
            s => return Err(OciError::Status(s)),
        }
        let headers = answer.head.headers();
        let media_type = headers
            .get_str("content-type")
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
            .filter(|m| kind_of(m).is_some())
            .ok_or(OciError::UnsupportedMediaType)?;
        let digest = Digest::of(&answer.body);
        if let Some(hint) = headers.get_str("docker-content-digest")
            && Digest::parse(hint.trim()) != Some(digest)
        {
            return Err(OciError::DigestHeaderMismatch);
        }
        if let Some(expected) = expected.filter(|e| *e != digest) {
            return Err(OciError::DigestMismatch {
                expected,
                actual: digest,
            });
        }
        Ok(Fetched {
            digest,
            media_type,
            bytes: answer.body,
        })
    }

    /// Resolves `reference` to the image for `platform`: the top manifest
    /// (pinned by the reference's digest or `expected`, if any), the entry
    /// of an index for the platform (fetched by its digest and checked
    /// against it), then its config and layers.
    pub fn resolve(
        &mut self,
        reference: &Reference,
        platform: &Platform,
        expected: Option<Digest>,
    ) -> Result<Resolved, OciError> {
        let pinned = match (reference.digest, expected) {
            (Some(a), Some(b)) if a != b => {
                return Err(OciError::DigestMismatch {
                    expected: b,
                    actual: a,
                });
            }
            (a, b) => a.or(b),
        };
        let repo = reference.repository.as_str();
        let top = self.fetch_manifest(repo, &reference.manifest_ref(), pinned)?;
        let max_blob = self.options.max_blob_bytes;
        let (index, manifest) = match kind_of(&top.media_type) {
            Some(Kind::Index) => {
                let entries = manifest::parse_index(&top.bytes, &top.media_type, max_blob)?;
                let chosen = manifest::choose(&entries, platform)?;
                let child =
                    self.fetch_manifest(repo, &chosen.digest.to_string(), Some(chosen.digest))?;
                if child.bytes.len() as u64 != chosen.size {
                    return Err(OciError::SizeMismatch);
                }
                if child.media_type != chosen.media_type {
                    return Err(OciError::BadManifest(
                        "served with another media type than the index says",
                    ));
                }
                (Some(top), child)
            }
            _ => (None, top),
        };
        let image = manifest::parse_manifest(&manifest.bytes, &manifest.media_type, max_blob)?;
        Ok(Resolved {
            index,
            manifest,
            config: image.config,
            layers: image.layers,
        })
    }

    /// Streams a blob into `sink` from where the sink is (Range resume,
    /// redirects to storage without our credentials). The sink's owner
    /// verifies the bytes against `blob.digest`.
    pub fn fetch_blob<S: BlobSink>(
        &mut self,
        repository: &str,
        blob: &Descriptor,
        sink: &mut S,
        validator: &mut Validator,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<Outcome, OciError> {
        let path = format!("/v2/{repository}/blobs/{}", blob.digest);
        let mut reauthenticated = false;
        loop {
            let req = Download {
                url: self.url(&path),
                authorization: self.authorization.clone(),
                expected_size: Some(blob.size),
                max_size: self.options.max_blob_bytes,
                max_redirects: self.options.max_redirects,
            };
            let proxy = self.options.proxy.clone();
            match fetch::download(
                &mut self.transport,
                proxy.as_ref(),
                sink,
                &req,
                validator,
                progress,
            ) {
                Err(FetchError::Unauthorized(401)) if !reauthenticated => {
                    // The token may be missing or expired: a HEAD of the
                    // blob gets a fresh challenge answered.
                    reauthenticated = true;
                    self.authorization = None;
                    let probe = self.registry_request(Method::Head, &path, None, repository, 0)?;
                    match probe.head.status() {
                        200 | 307 | 302 => {}
                        404 => return Err(OciError::NotFound),
                        s => return Err(OciError::Status(s)),
                    }
                }
                Err(FetchError::Unauthorized(_)) => return Err(OciError::Unauthorized),
                Err(FetchError::NotFound) => return Err(OciError::NotFound),
                Err(e) => return Err(e.into()),
                Ok(outcome) => return Ok(outcome),
            }
        }
    }
}

/// Where a redirect leads: absolute http(s), or a path on the same
/// server; never from https to http.
fn redirect(from: &Target, location: Option<&str>) -> Result<Target, OciError> {
    let location = location.ok_or(OciError::BadRedirect)?.trim();
    let next = if location.starts_with('/') && !location.starts_with("//") {
        Target {
            path: String::from(location),
            ..from.clone()
        }
    } else {
        Target::parse_url(location).map_err(|_| OciError::BadRedirect)?
    };
    if from.scheme == Scheme::Https && next.scheme == Scheme::Http {
        return Err(OciError::BadRedirect);
    }
    Ok(next)
}
