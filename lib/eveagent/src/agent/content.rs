//! Content: the accepted config's datastores (their sealed credentials
//! opened with the device's key), content trees, volumes and content
//! settings as the tables zedagent publishes; what volumemgr reports, sent
//! to the controller as EVE sends it (one `ZInfoMsg` per object, on
//! change); the disk's use by content in the metrics.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use alloc::boxed::Box;

use eve_proto::Message;
use eve_proto::attest::{ZAttestReq, ZAttestReqType};
use eve_proto::certs::{ZCert, ZCertAttr, ZCertType};
use eve_proto::cipher::{KeyAgreement, decrypt_encryption_block};
use eve_proto::common::{CipherBlock, EncryptionBlock, HashAlgorithm};
use eve_proto::config::{ConfigItem, ContentTree, EdgeDevConfig, Volume};
use eve_proto::info::{
    ContentResources, ErrorInfo, Severity, VolumeResources, ZInfoBlob, ZInfoBlobList,
    ZInfoContentTree, ZInfoMsg, ZInfoTypes, ZInfoVolume, z_info_msg::InfoContent,
};
use eve_proto::metrics::{DiskMetric, ZMetricVolume};
use eve_proto::p256::PublicKey;
use eve_proto::sha256;
use eve_proto::x509;
use topics::content::{
    BlobEntry, Blobs, ContentTreeState, Datastore, Settings, Usage, VolumeState,
};

use crate::identity::SecretKey;
use crate::logs::Level;

use super::keycert::KeyCertKind;
use super::{API, Agent, timestamp};

/// `timer.gc.vdisk`
pub const KEY_GC_VDISK: &str = "timer.gc.vdisk";
/// State-volume record: the TPM ECDH key's certificate, PEM.
pub const REC_ECDH_CERT: &str = "ecdh-cert.pem";
/// State-volume record: the SHA-256 of the ECDH certificate the controller
/// took.
pub const REC_ECDH_SENT: &str = "ecdh-cert-sent";
/// Validity of the ECDH key's certificate, as the device certificate's.
const ECDH_CERT_LIFETIME_S: u64 = 20 * 365 * 24 * 3600;

/// The ECDH key's certificate.
const ECDH_CERT: KeyCertKind = KeyCertKind {
    record: REC_ECDH_CERT,
    name_suffix: "ecdh",
    lifetime_s: ECDH_CERT_LIFETIME_S,
    issue: x509::generate_ecdh_cert,
};

/// `timer.download.retry`
pub const KEY_DOWNLOAD_RETRY: &str = "timer.download.retry";

/// The config's content, as the tables zedagent publishes (keys: the
/// objects' ids).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContentTables {
    pub datastores: BTreeMap<String, Datastore>,
    pub trees: BTreeMap<String, ContentTree>,
    pub volumes: BTreeMap<String, Volume>,
    pub settings: Settings,
}

/// What volumemgr reported, to send to the controller.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentInfo {
    Tree(ContentTreeState),
    Volume(VolumeState),
    Blobs(Blobs),
}

fn seconds(items: &[ConfigItem], key: &str, default: u64) -> u64 {
    items
        .iter()
        .find(|i| i.key == key)
        .and_then(|i| i.value.trim().parse::<u64>().ok())
        .unwrap_or(default)
}

fn error_info(text: &str, unix_s: u64) -> Option<ErrorInfo> {
    (!text.is_empty()).then(|| ErrorInfo {
        description: String::from(text),
        timestamp: Some(timestamp(unix_s.saturating_mul(1000))),
        severity: Severity::Error as i32,
        ..Default::default()
    })
}

/// `ZInfoContentTree` of a content tree's state.
pub fn tree_info(s: &ContentTreeState) -> ZInfoContentTree {
    ZInfoContentTree {
        uuid: s.uuid.clone(),
        display_name: s.display_name.clone(),
        sha256: s.sha256.clone(),
        resources: Some(ContentResources {
            cur_size_bytes: s.size_bytes,
        }),
        state: s.state,
        progress_percentage: s.progress_percent,
        err: error_info(&s.error, s.error_unix),
        component_sha_list: s.components.clone(),
        generation_count: s.generation_count,
        ..Default::default()
    }
}

/// `ZInfoVolume` of a volume's state.
pub fn volume_info(s: &VolumeState) -> ZInfoVolume {
    ZInfoVolume {
        uuid: s.uuid.clone(),
        display_name: s.display_name.clone(),
        resources: Some(VolumeResources {
            max_size_bytes: s.max_size_bytes,
            cur_size_bytes: s.used_bytes,
        }),
        state: s.state,
        progress_percentage: s.progress_percent,
        volume_err: error_info(&s.error, s.error_unix),
        generation_count: s.generation_count,
        ..Default::default()
    }
}

/// `ZInfoBlobList` of the store's blobs.
pub fn blob_list(b: &Blobs) -> ZInfoBlobList {
    ZInfoBlobList {
        blob: b
            .blobs
            .iter()
            .map(|e: &BlobEntry| ZInfoBlob {
                sha256: e.sha256.clone(),
                resources: Some(ContentResources {
                    cur_size_bytes: e.size_bytes,
                }),
                state: e.state,
                progress_percentage: e.progress_percent,
                err: error_info(&e.error, 0),
                ..Default::default()
            })
            .collect(),
    }
}

impl Agent {
    /// Takes the TPM's ECDH key (`public`, used through `agreement`) as a
    /// key that opens secrets sealed for this device: its certificate,
    /// issued by the device certificate, is loaded from the state volume or
    /// made, and given to the controller at attestation (once; again when
    /// it changes), so the controller seals secrets for it.
    pub fn use_ecdh_key(&mut self, agreement: Box<dyn KeyAgreement>, public: &PublicKey) {
        let Some(pem) = self.kept_or_new_key_cert(&ECDH_CERT, public) else {
            self.note(
                Level::Error,
                String::from("cannot make the ECDH key's certificate"),
            );
            return;
        };
        let sent = self.read(REC_ECDH_SENT).as_deref() == Some(&sha256(&pem)[..]);
        self.secret_keys.push(SecretKey::new(agreement, &pem));
        self.ecdh_cert = Some((pem, !sent));
    }

    /// The attestation request that gives the controller the ECDH key's
    /// certificate, while it has not taken it.
    pub(super) fn ecdh_cert_request(&self) -> Option<ZAttestReq> {
        let (pem, pending) = self.ecdh_cert.as_ref()?;
        pending.then(|| ZAttestReq {
            req_type: ZAttestReqType::AttestReqCert as i32,
            certs: alloc::vec![ZCert {
                hash_algo: HashAlgorithm::Sha25632bytes as i32,
                cert_hash: sha256(pem).to_vec(),
                r#type: ZCertType::CertTypeDeviceEcdhExchange as i32,
                cert: pem.clone(),
                attributes: Some(ZCertAttr {
                    is_mutable: false,
                    is_tpm: true,
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    /// The controller answered the ECDH certificate's request: taken, or
    /// refused (an older controller); either way attestation goes on.
    pub(super) fn ecdh_cert_answered(&mut self, taken: bool) {
        let Some((pem, pending)) = self.ecdh_cert.as_mut() else {
            return;
        };
        *pending = false;
        let hash = sha256(pem);
        if taken {
            self.write(REC_ECDH_SENT, &hash);
        } else {
            self.note(
                Level::Warning,
                String::from(
                    "the controller refused the ECDH certificate: secrets it seals cannot be opened",
                ),
            );
        }
    }

    /// Opens a sealed secret of `config`: its cipher context names the
    /// controller's ECDH certificate and the device certificate it was
    /// sealed for.
    pub(super) fn open_secret(
        &self,
        config: &EdgeDevConfig,
        block: &CipherBlock,
    ) -> Result<EncryptionBlock, String> {
        let context = config
            .cipher_contexts
            .iter()
            .find(|c| c.context_id == block.cipher_context_id)
            .ok_or_else(|| format!("no cipher context {}", block.cipher_context_id))?;
        let hash_len = match context.hash_scheme() {
            HashAlgorithm::Sha25616bytes => 16,
            HashAlgorithm::Sha25632bytes => 32,
            other => return Err(format!("hash scheme {} not supported", other.as_str_name())),
        };
        if context.controller_cert_hash.len() != hash_len
            || context.device_cert_hash.len() != hash_len
        {
            return Err(String::from(
                "the cipher context's hashes have the wrong length",
            ));
        }
        let controller = self
            .controller_ecdh
            .iter()
            .find(|c| c.cert_hash.starts_with(&context.controller_cert_hash))
            .ok_or("sealed with a controller ECDH certificate /certs did not give")?;
        let key = self
            .secret_keys
            .iter()
            .find(|k| k.named_by(&context.device_cert_hash))
            .ok_or("sealed for a device certificate this device has no key for")?;
        let controller_key = controller
            .p256_key()
            .ok_or("the controller's ECDH certificate is not P-256")?;
        decrypt_encryption_block(block, context, key.agreement(), &controller_key)
            .map_err(|e| format!("{e:?}"))
    }

    /// The accepted config's content as tables, credentials opened.
    pub fn content_tables(&self) -> Option<ContentTables> {
        let config = self.config()?;
        let datastores = config
            .datastores
            .iter()
            .map(|ds| {
                let mut clear = ds.clone();
                let mut credentials_error = String::new();
                if let Some(block) = clear.cipher_data.take()
                    && (!block.cipher_data.is_empty() || !block.cipher_context_id.is_empty())
                {
                    match self.open_secret(config, &block) {
                        Ok(secret) => {
                            clear.api_key = secret.ds_api_key;
                            clear.password = secret.ds_password;
                        }
                        Err(e) => credentials_error = e,
                    }
                }
                (
                    ds.id.clone(),
                    Datastore {
                        config: Some(clear),
                        credentials_error,
                    },
                )
            })
            .collect();
        let items = &config.config_items;
        Some(ContentTables {
            datastores,
            trees: config
                .content_info
                .iter()
                .map(|t| (t.uuid.clone(), t.clone()))
                .collect(),
            volumes: config
                .volumes
                .iter()
                .map(|v| (v.uuid.clone(), v.clone()))
                .collect(),
            settings: Settings {
                gc_vdisk_secs: seconds(items, KEY_GC_VDISK, Settings::DEFAULT.gc_vdisk_secs),
                download_retry_secs: seconds(
                    items,
                    KEY_DOWNLOAD_RETRY,
                    Settings::DEFAULT.download_retry_secs,
                ),
            },
        })
    }

    /// Queues what volumemgr reported for the controller: one `ZInfoMsg`
    /// per object, replacing a queued one about the same object.
    pub fn report_content(&mut self, info: ContentInfo) {
        let Some(uuid) = self.uuid.clone() else {
            return;
        };
        let (key, ztype, content) = match info {
            ContentInfo::Tree(s) => (
                format!("content/{}", s.uuid),
                ZInfoTypes::ZiContentTree,
                InfoContent::Cinfo(tree_info(&s)),
            ),
            ContentInfo::Volume(s) => (
                format!("volume/{}", s.uuid),
                ZInfoTypes::ZiVolume,
                InfoContent::Vinfo(volume_info(&s)),
            ),
            ContentInfo::Blobs(b) => (
                String::from("blobs"),
                ZInfoTypes::ZiBlobList,
                InfoContent::Binfo(blob_list(&b)),
            ),
        };
        let msg = ZInfoMsg {
            ztype: ztype as i32,
            dev_id: uuid.to_string(),
            info_content: Some(content),
            at_time_stamp: Some(timestamp(self.unix_ms())),
        };
        let now = self.now();
        match self.sign(msg.encode_to_vec()) {
            Some(body) => {
                if self
                    .info
                    .push(key, format!("{API}/id/{uuid}/info"), body, now)
                {
                    self.counters.info_dropped += 1;
                }
            }
            None => self.note(Level::Error, String::from("cannot sign content info")),
        }
    }

    /// The disk's use by content, for the next metrics.
    pub fn set_content_usage(&mut self, usage: Usage) {
        self.content_usage = Some(usage);
    }

    /// Each volume's use (`ZMetricMsg.vm`).
    pub(super) fn volume_metrics(&self) -> Vec<ZMetricVolume> {
        self.content_usage
            .iter()
            .flat_map(|u| &u.volumes)
            .map(|v| ZMetricVolume {
                uuid: v.uuid.clone(),
                display_name: v.display_name.clone(),
                total_bytes: v.total_bytes,
                used_bytes: v.used_bytes,
                free_bytes: v.total_bytes.saturating_sub(v.used_bytes),
                ..Default::default()
            })
            .collect()
    }

    /// The content store as a disk of the device metrics, in MiB as
    /// `diskMetric` counts.
    pub(super) fn content_disk_metric(&self) -> Option<DiskMetric> {
        let u = self.content_usage.as_ref()?;
        Some(DiskMetric {
            disk: String::from("content"),
            mount_path: String::from("/persist/content"),
            total: u.total_bytes >> 20,
            used: (u.blob_bytes + u.staged_bytes) >> 20,
            free: u.free_bytes >> 20,
            ..Default::default()
        })
    }
}
