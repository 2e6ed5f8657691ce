//! `cargo xtask api-diff --eve-api DIR`: every difference between our
//! `.proto` files (`lib/eve-proto/proto`) and a checkout of lf-edge/eve-api.
//!
//! Both trees are compiled with protox and compared as descriptors, so
//! formatting, comments, declaration order and the spelling of type names
//! (relative or qualified) do not matter; what reaches the wire and the
//! generated code does: files and packages, messages, enums, fields (number,
//! name, type, label, oneof, packing, deprecation), enum values, reserved
//! numbers and names, services and extensions. Custom options (upstream's
//! `validate.rules`) describe checks, not the wire, and are ignored, as are
//! imports the checkout itself does not contain (buf fetches them).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use protox::file::{File, FileResolver, GoogleFileResolver};
use protox::prost_reflect::prost_types::{
    DescriptorProto, EnumDescriptorProto, FileDescriptorProto, UninterpretedOption,
};
use protox::prost_reflect::{
    Cardinality, DescriptorPool, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor,
};

#[derive(clap::Args)]
pub struct Args {
    /// A checkout of lf-edge/eve-api (its root or its `proto` folder).
    #[arg(long)]
    eve_api: PathBuf,
    /// Our `.proto` tree (default: lib/eve-proto/proto).
    #[arg(long)]
    ours: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<(), String> {
    let ours_dir = args
        .ours
        .unwrap_or_else(|| harness::workspace_root().join("lib/eve-proto/proto"));
    let upstream_dir = proto_root(&args.eve_api);
    let ours =
        compile(&read_tree(&ours_dir)?).map_err(|e| format!("{}: {e}", ours_dir.display()))?;
    let upstream = compile(&read_tree(&upstream_dir)?)
        .map_err(|e| format!("{}: {e}", upstream_dir.display()))?;
    let differences = compare(&ours, &upstream);
    for difference in &differences {
        println!("{difference}");
    }
    let (messages, enums, fields) = counts(&upstream);
    println!(
        "api-diff: {} against {} ({messages} messages, {enums} enums, {fields} fields upstream): {} difference(s)",
        ours_dir.display(),
        upstream_dir.display(),
        differences.len()
    );
    if differences.is_empty() {
        Ok(())
    } else {
        Err(format!("{} difference(s) from eve-api", differences.len()))
    }
}

/// eve-api keeps its files under `proto/`; accept the checkout root too.
fn proto_root(dir: &Path) -> PathBuf {
    let nested = dir.join("proto");
    if nested.join("register/register.proto").is_file() {
        nested
    } else {
        dir.to_path_buf()
    }
}

/// Every `.proto` file under `root`, by its import name (`config/vm.proto`).
fn read_tree(root: &Path) -> Result<BTreeMap<String, String>, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> Result<(), String> {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else if path.extension().is_some_and(|e| e == "proto") {
                let name = path
                    .strip_prefix(root)
                    .expect("walked from root")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                out.insert(name, text);
            }
        }
        Ok(())
    }
    let mut files = BTreeMap::new();
    walk(root, root, &mut files)?;
    if files.is_empty() {
        return Err(format!("{}: no .proto files", root.display()));
    }
    Ok(files)
}

/// Compiles a tree given as import name -> source text.
pub fn compile(sources: &BTreeMap<String, String>) -> Result<DescriptorPool, String> {
    let mut compiler = protox::Compiler::with_file_resolver(TreeResolver {
        sources: sources.clone(),
        google: GoogleFileResolver::new(),
    });
    compiler.include_imports(true);
    compiler
        .open_files(sources.keys())
        .map_err(|e| e.to_string())?;
    DescriptorPool::from_file_descriptor_set(compiler.file_descriptor_set())
        .map_err(|e| e.to_string())
}

/// Serves the tree, well-known types from protox, and nothing else.
struct TreeResolver {
    sources: BTreeMap<String, String>,
    google: GoogleFileResolver,
}

impl FileResolver for TreeResolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        let Some(source) = self.sources.get(name) else {
            return self.google.open_file(name);
        };
        let parsed = File::from_source(name, source)?;
        let mut file = parsed.file_descriptor_proto().clone();
        file.dependency
            .retain(|dep| self.sources.contains_key(dep) || self.google.open_file(dep).is_ok());
        strip_custom_options(&mut file);
        Ok(File::from_file_descriptor_proto(file))
    }
}

fn strip_custom_options(file: &mut FileDescriptorProto) {
    fn keep(options: &mut Vec<UninterpretedOption>) {
        options.retain(|o| !o.name.iter().any(|part| part.is_extension));
    }
    fn in_enum(e: &mut EnumDescriptorProto) {
        if let Some(o) = &mut e.options {
            keep(&mut o.uninterpreted_option);
        }
        for value in &mut e.value {
            if let Some(o) = &mut value.options {
                keep(&mut o.uninterpreted_option);
            }
        }
    }
    fn in_message(m: &mut DescriptorProto) {
        if let Some(o) = &mut m.options {
            keep(&mut o.uninterpreted_option);
        }
        for field in m.field.iter_mut().chain(&mut m.extension) {
            if let Some(o) = &mut field.options {
                keep(&mut o.uninterpreted_option);
            }
        }
        for oneof in &mut m.oneof_decl {
            if let Some(o) = &mut oneof.options {
                keep(&mut o.uninterpreted_option);
            }
        }
        m.nested_type.iter_mut().for_each(in_message);
        m.enum_type.iter_mut().for_each(in_enum);
    }
    if let Some(o) = &mut file.options {
        keep(&mut o.uninterpreted_option);
    }
    file.message_type.iter_mut().for_each(in_message);
    file.enum_type.iter_mut().for_each(in_enum);
    for field in &mut file.extension {
        if let Some(o) = &mut field.options {
            keep(&mut o.uninterpreted_option);
        }
    }
    for service in &mut file.service {
        if let Some(o) = &mut service.options {
            keep(&mut o.uninterpreted_option);
        }
        for method in &mut service.method {
            if let Some(o) = &mut method.options {
                keep(&mut o.uninterpreted_option);
            }
        }
    }
}

/// Messages, enums and fields of a tree (map entries and well-known types
/// left out).
fn counts(pool: &DescriptorPool) -> (usize, usize, usize) {
    let messages: Vec<_> = messages(pool).into_values().collect();
    let fields = messages.iter().map(|m| m.fields().len()).sum();
    (messages.len(), enums(pool).len(), fields)
}

fn is_ours_to_compare(file: &str) -> bool {
    !file.starts_with("google/protobuf/")
}

fn messages(pool: &DescriptorPool) -> BTreeMap<String, MessageDescriptor> {
    pool.all_messages()
        .filter(|m| !m.is_map_entry() && is_ours_to_compare(m.parent_file().name()))
        .map(|m| (m.full_name().to_owned(), m))
        .collect()
}

fn enums(pool: &DescriptorPool) -> BTreeMap<String, EnumDescriptor> {
    pool.all_enums()
        .filter(|e| is_ours_to_compare(e.parent_file().name()))
        .map(|e| (e.full_name().to_owned(), e))
        .collect()
}

/// One way in which our tree is not upstream's.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Difference {
    /// The file, message, enum, field or value concerned.
    pub subject: String,
    /// What differs, naming ours first.
    pub what: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.what)
    }
}

struct Report(Vec<Difference>);

impl Report {
    fn add(&mut self, subject: impl Into<String>, what: impl Into<String>) {
        self.0.push(Difference {
            subject: subject.into(),
            what: what.into(),
        });
    }

    /// Reports `name` when ours and upstream's values differ.
    fn same<T: PartialEq + fmt::Debug>(&mut self, subject: &str, name: &str, ours: T, up: T) {
        if ours != up {
            self.add(subject, format!("{name} {ours:?} ours, {up:?} upstream"));
        }
    }

    /// Walks two keyed sets: reports what only one side has, and calls
    /// `both` for what both have.
    fn pair<K: Ord + fmt::Display, V>(
        &mut self,
        subject: &str,
        kind: &str,
        ours: &BTreeMap<K, V>,
        upstream: &BTreeMap<K, V>,
        mut both: impl FnMut(&mut Self, &K, &V, &V),
    ) {
        for (key, ours_value) in ours {
            match upstream.get(key) {
                Some(up_value) => both(self, key, ours_value, up_value),
                None => self.add(subject, format!("{kind} {key} is not upstream")),
            }
        }
        for key in upstream.keys().filter(|k| !ours.contains_key(*k)) {
            self.add(subject, format!("{kind} {key} is missing"));
        }
    }
}

/// Every difference between `ours` and `upstream`, sorted.
pub fn compare(ours: &DescriptorPool, upstream: &DescriptorPool) -> Vec<Difference> {
    let mut report = Report(Vec::new());
    let files = |pool: &DescriptorPool| -> BTreeMap<String, String> {
        pool.files()
            .filter(|f| is_ours_to_compare(f.name()))
            .map(|f| (f.name().to_owned(), f.package_name().to_owned()))
            .collect()
    };
    report.pair(
        "tree",
        "file",
        &files(ours),
        &files(upstream),
        |r, file, o, u| r.same(file, "package", o, u),
    );
    report.pair(
        "tree",
        "message",
        &messages(ours),
        &messages(upstream),
        |r, _, o, u| compare_message(r, o, u),
    );
    report.pair(
        "tree",
        "enum",
        &enums(ours),
        &enums(upstream),
        |r, _, o, u| compare_enum(r, o, u),
    );
    compare_services(&mut report, ours, upstream);
    compare_extensions(&mut report, ours, upstream);
    let mut differences = report.0;
    differences.sort();
    differences
}

fn compare_message(r: &mut Report, ours: &MessageDescriptor, up: &MessageDescriptor) {
    let name = ours.full_name();
    r.same(
        name,
        "file",
        ours.parent_file().name(),
        up.parent_file().name(),
    );
    // Message ranges end one past their last number.
    let numbers = |ranges: &mut dyn Iterator<Item = std::ops::Range<u32>>| {
        number_ranges(ranges.map(|r| (i64::from(r.start), i64::from(r.end) - 1)))
    };
    r.same(
        name,
        "reserved numbers",
        numbers(&mut ours.reserved_ranges()),
        numbers(&mut up.reserved_ranges()),
    );
    r.same(
        name,
        "reserved names",
        ours.reserved_names().collect::<BTreeSet<_>>(),
        up.reserved_names().collect::<BTreeSet<_>>(),
    );
    r.same(
        name,
        "extension ranges",
        numbers(&mut ours.extension_ranges()),
        numbers(&mut up.extension_ranges()),
    );
    let oneofs = |m: &MessageDescriptor| -> BTreeSet<String> {
        m.oneofs()
            .filter(|o| !o.is_synthetic())
            .map(|o| o.name().to_owned())
            .collect()
    };
    r.same(name, "oneofs", oneofs(ours), oneofs(up));
    let fields = |m: &MessageDescriptor| -> BTreeMap<u32, FieldDescriptor> {
        m.fields().map(|f| (f.number(), f)).collect()
    };
    let named = |m: &MessageDescriptor| -> BTreeMap<String, FieldDescriptor> {
        m.fields()
            .map(|f| (format!("{} `{}`", f.number(), f.name()), f))
            .collect()
    };
    let (ours_fields, up_fields) = (fields(ours), fields(up));
    // Missing and extra fields by number and name, so a renumbered field
    // reads "field 25 `x` is not upstream" and "field 26 `x` is missing".
    let only = |a: &BTreeMap<u32, FieldDescriptor>, b: &BTreeMap<u32, FieldDescriptor>| {
        a.keys().filter(|n| !b.contains_key(*n)).count()
    };
    if only(&ours_fields, &up_fields) + only(&up_fields, &ours_fields) > 0 {
        let (ours_named, up_named) = (named(ours), named(up));
        let keep = |m: BTreeMap<String, FieldDescriptor>,
                    other: &BTreeMap<u32, FieldDescriptor>|
         -> BTreeMap<String, FieldDescriptor> {
            m.into_iter()
                .filter(|(_, f)| !other.contains_key(&f.number()))
                .collect()
        };
        r.pair(
            name,
            "field",
            &keep(ours_named, &up_fields),
            &keep(up_named, &ours_fields),
            |_, _, _, _| {},
        );
    }
    for (number, ours_field) in &ours_fields {
        if let Some(up_field) = up_fields.get(number) {
            compare_field(r, name, ours_field, up_field);
        }
    }
}

/// Inclusive number ranges as a `reserved` statement writes them, in order.
fn number_ranges(ranges: impl Iterator<Item = (i64, i64)>) -> String {
    let mut ranges: Vec<_> = ranges.collect();
    ranges.sort_unstable();
    ranges
        .iter()
        .map(|&(first, last)| {
            if first == last {
                first.to_string()
            } else {
                format!("{first} to {last}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn compare_field(r: &mut Report, message: &str, ours: &FieldDescriptor, up: &FieldDescriptor) {
    let subject = format!("{message} field {}", ours.number());
    r.same(&subject, "name", ours.name(), up.name());
    r.same(&subject, "type", field_type(ours), field_type(up));
    r.same(&subject, "label", label(ours), label(up));
    r.same(
        &subject,
        "oneof",
        real_oneof(ours).unwrap_or_default(),
        real_oneof(up).unwrap_or_default(),
    );
    r.same(&subject, "json name", ours.json_name(), up.json_name());
    r.same(&subject, "packed", ours.is_packed(), up.is_packed());
    r.same(&subject, "deprecated", deprecated(ours), deprecated(up));
}

/// The type as written in a `.proto` file, with full names.
fn field_type(field: &FieldDescriptor) -> String {
    match field.kind() {
        Kind::Message(entry) if field.is_map() => format!(
            "map<{:?}, {:?}>",
            entry.map_entry_key_field().kind(),
            entry.map_entry_value_field().kind()
        ),
        kind => format!("{kind:?}"),
    }
}

fn label(field: &FieldDescriptor) -> &'static str {
    if field.is_map() {
        "map"
    } else if field.field_descriptor_proto().proto3_optional() {
        "optional"
    } else {
        match field.cardinality() {
            Cardinality::Repeated => "repeated",
            Cardinality::Required => "required",
            Cardinality::Optional => "singular",
        }
    }
}

fn real_oneof(field: &FieldDescriptor) -> Option<String> {
    field
        .containing_oneof()
        .filter(|o| !o.is_synthetic())
        .map(|o| o.name().to_owned())
}

fn deprecated(field: &FieldDescriptor) -> bool {
    field
        .field_descriptor_proto()
        .options
        .as_ref()
        .is_some_and(|o| o.deprecated())
}

fn compare_enum(r: &mut Report, ours: &EnumDescriptor, up: &EnumDescriptor) {
    let name = ours.full_name();
    r.same(
        name,
        "file",
        ours.parent_file().name(),
        up.parent_file().name(),
    );
    let proto = |e: &EnumDescriptor| e.enum_descriptor_proto().clone();
    let (ours_proto, up_proto) = (proto(ours), proto(up));
    let alias = |p: &EnumDescriptorProto| p.options.as_ref().is_some_and(|o| o.allow_alias());
    r.same(name, "allow_alias", alias(&ours_proto), alias(&up_proto));
    let numbers = |e: &EnumDescriptor| {
        number_ranges(
            e.reserved_ranges()
                .map(|r| (i64::from(*r.start()), i64::from(*r.end()))),
        )
    };
    r.same(name, "reserved numbers", numbers(ours), numbers(up));
    r.same(
        name,
        "reserved names",
        ours.reserved_names().collect::<BTreeSet<_>>(),
        up.reserved_names().collect::<BTreeSet<_>>(),
    );
    // By name, with number and deprecation; the zero value (the default)
    // must also be the same one.
    let values = |p: &EnumDescriptorProto| -> BTreeMap<String, (i32, bool)> {
        p.value
            .iter()
            .map(|v| {
                let deprecated = v.options.as_ref().is_some_and(|o| o.deprecated());
                (v.name().to_owned(), (v.number(), deprecated))
            })
            .collect()
    };
    r.pair(
        name,
        "value",
        &values(&ours_proto),
        &values(&up_proto),
        |r, _, o, u| {
            if o.0 != u.0 {
                r.add(name, format!("value number {} ours, {} upstream", o.0, u.0));
            }
            if o.1 != u.1 {
                r.add(
                    name,
                    format!("value deprecated {} ours, {} upstream", o.1, u.1),
                );
            }
        },
    );
    r.same(
        name,
        "default value",
        ours.default_value().name(),
        up.default_value().name(),
    );
}

fn compare_services(r: &mut Report, ours: &DescriptorPool, upstream: &DescriptorPool) {
    let services = |pool: &DescriptorPool| -> BTreeMap<String, Vec<String>> {
        pool.services()
            .filter(|s| is_ours_to_compare(s.parent_file().name()))
            .map(|s| {
                let methods = s
                    .methods()
                    .map(|m| {
                        format!(
                            "{}({}{}) -> {}{}",
                            m.name(),
                            if m.is_client_streaming() {
                                "stream "
                            } else {
                                ""
                            },
                            m.input().full_name(),
                            if m.is_server_streaming() {
                                "stream "
                            } else {
                                ""
                            },
                            m.output().full_name()
                        )
                    })
                    .collect();
                (s.full_name().to_owned(), methods)
            })
            .collect()
    };
    r.pair(
        "tree",
        "service",
        &services(ours),
        &services(upstream),
        |r, service, o, u| r.same(service, "methods", o, u),
    );
}

fn compare_extensions(r: &mut Report, ours: &DescriptorPool, upstream: &DescriptorPool) {
    let extensions = |pool: &DescriptorPool| -> BTreeMap<String, String> {
        pool.all_extensions()
            .filter(|e| is_ours_to_compare(e.parent_file().name()))
            .map(|e| {
                let shape = format!(
                    "{} {:?} = {} extends {}",
                    if e.is_list() { "repeated" } else { "singular" },
                    e.kind(),
                    e.number(),
                    e.containing_message().full_name()
                );
                (e.full_name().to_owned(), shape)
            })
            .collect()
    };
    r.pair(
        "tree",
        "extension",
        &extensions(ours),
        &extensions(upstream),
        |r, extension, o, u| r.same(extension, "shape", o, u),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small upstream tree in eve-api's style: two packages, an import,
    /// a nested message, a oneof, a map, proto3 `optional`, reserved
    /// numbers and names, a deprecated field, an aliased enum, and a
    /// custom option from an import the tree does not contain.
    fn upstream() -> BTreeMap<String, String> {
        tree(&[
            (
                "common/common.proto",
                r#"
syntax = "proto3";
package org.example.common;
option go_package = "example.org/common";
enum HashAlgorithm {
  HASH_ALGORITHM_INVALID = 0;
  HASH_ALGORITHM_SHA256 = 1;
}
message Blob { bytes data = 1; }
"#,
            ),
            (
                "config/config.proto",
                r#"
syntax = "proto3";
package org.example.config;
import "common/common.proto";
import "validate/validate.proto";
import "google/protobuf/timestamp.proto";

// The device's configuration.
message Config {
  reserved 4, 9 to 11;
  reserved "old_name";
  string id = 1 [(validate.rules).string = {max_len: 36}];
  repeated App apps = 2;
  map<string, string> items = 3;
  oneof payload {
    org.example.common.Blob blob = 5;
    string text = 6;
  }
  optional uint32 retries = 7;
  google.protobuf.Timestamp at = 8;
  string legacy = 12 [deprecated = true];
  org.example.common.HashAlgorithm algo = 13;
  message App {
    string name = 1;
    int64 size = 2;
  }
}

enum Command {
  option allow_alias = true;
  COMMAND_NONE = 0;
  COMMAND_STOP = 1;
  COMMAND_HALT = 1;
}
"#,
            ),
        ])
    }

    fn tree(files: &[(&str, &str)]) -> BTreeMap<String, String> {
        files
            .iter()
            .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
            .collect()
    }

    fn differences(ours: &BTreeMap<String, String>) -> Vec<String> {
        let ours = compile(ours).expect("ours compiles");
        let upstream = compile(&upstream()).expect("upstream compiles");
        compare(&ours, &upstream)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// `upstream()` with each `(from, to)` replacement made exactly once.
    fn edited(edits: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut files = upstream();
        for (from, to) in edits {
            let hits: Vec<_> = files
                .values_mut()
                .filter(|text| text.contains(from))
                .collect();
            assert_eq!(hits.len(), 1, "{from:?} must occur in one file");
            let text = hits.into_iter().next().expect("one file");
            assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once");
            *text = text.replacen(from, to, 1);
        }
        files
    }

    #[test]
    fn a_restatement_in_other_words_and_order_is_no_difference() {
        let ours = tree(&[
            (
                "common/common.proto",
                r#"
// Ours: comments, no go_package, other order.
syntax = "proto3";
package org.example.common;

// Bytes.
message Blob {
  bytes data = 1;
}

enum HashAlgorithm {
  HASH_ALGORITHM_INVALID = 0;
  HASH_ALGORITHM_SHA256 = 1;
}
"#,
            ),
            (
                "config/config.proto",
                r#"
syntax = "proto3";
package org.example.config;
import "google/protobuf/timestamp.proto";
import "common/common.proto";

enum Command {
  option allow_alias = true;
  COMMAND_NONE = 0;
  COMMAND_STOP = 1;
  COMMAND_HALT = 1;
}

message Config {
  message App {
    int64 size = 2;
    string name = 1;
  }
  reserved 9 to 11, 4;
  reserved "old_name";
  org.example.common.HashAlgorithm algo = 13;
  string legacy = 12 [deprecated = true];
  .google.protobuf.Timestamp at = 8;
  optional uint32 retries = 7;
  oneof payload {
    string text = 6;
    .org.example.common.Blob blob = 5;
  }
  map<string, string> items = 3;
  repeated Config.App apps = 2;
  string id = 1;
}
"#,
            ),
        ]);
        assert_eq!(differences(&ours), Vec::<String>::new());
    }

    #[test]
    fn a_wrong_field_number_is_reported() {
        let ours = edited(&[("int64 size = 2;", "int64 size = 3;")]);
        assert_eq!(
            differences(&ours),
            [
                "org.example.config.Config.App: field 2 `size` is missing",
                "org.example.config.Config.App: field 3 `size` is not upstream",
            ]
        );
    }

    #[test]
    fn every_kind_of_difference_is_reported() {
        let ours = edited(&[
            ("string name = 1;", "string title = 1;"),
            ("repeated App apps = 2;", "App apps = 2;"),
            ("map<string, string> items", "map<string, bytes> items"),
            (
                "string text = 6;",
                "string text = 6; } string spare = 14; oneof other { uint32 num = 15;",
            ),
            ("optional uint32 retries = 7;", "uint32 retries = 7;"),
            ("google.protobuf.Timestamp at = 8;", "int64 at = 8;"),
            (
                "string legacy = 12 [deprecated = true];",
                "string legacy = 12;",
            ),
            ("reserved 4, 9 to 11;", "reserved 4, 9 to 10;"),
            ("reserved \"old_name\";", ""),
            ("COMMAND_HALT = 1;", "COMMAND_HALT = 2;"),
            ("option allow_alias = true;", ""),
            ("HASH_ALGORITHM_SHA256 = 1;", ""),
            (
                "message Blob { bytes data = 1; }",
                "message Blob { bytes data = 1; }\nmessage Extra {}\nenum Spare { SPARE_NONE = 0; }",
            ),
        ]);
        assert_eq!(
            differences(&ours),
            [
                "org.example.common.HashAlgorithm: value HASH_ALGORITHM_SHA256 is missing",
                "org.example.config.Command: allow_alias false ours, true upstream",
                "org.example.config.Command: value number 2 ours, 1 upstream",
                "org.example.config.Config: field 14 `spare` is not upstream",
                "org.example.config.Config: field 15 `num` is not upstream",
                "org.example.config.Config: oneofs {\"other\", \"payload\"} ours, {\"payload\"} upstream",
                "org.example.config.Config: reserved names {} ours, {\"old_name\"} upstream",
                "org.example.config.Config: reserved numbers \"4, 9 to 10\" ours, \"4, 9 to 11\" upstream",
                "org.example.config.Config field 12: deprecated false ours, true upstream",
                "org.example.config.Config field 2: label \"singular\" ours, \"repeated\" upstream",
                "org.example.config.Config field 3: type \"map<string, bytes>\" ours, \"map<string, string>\" upstream",
                "org.example.config.Config field 7: label \"singular\" ours, \"optional\" upstream",
                "org.example.config.Config field 8: type \"int64\" ours, \"google.protobuf.Timestamp\" upstream",
                "org.example.config.Config.App field 1: json name \"title\" ours, \"name\" upstream",
                "org.example.config.Config.App field 1: name \"title\" ours, \"name\" upstream",
                "tree: enum org.example.common.Spare is not upstream",
                "tree: message org.example.common.Extra is not upstream",
            ]
        );
    }

    #[test]
    fn a_field_moved_into_or_out_of_a_oneof_is_reported() {
        let ours = edited(&[
            ("oneof payload {", ""),
            ("string text = 6;\n  }", "string text = 6;"),
        ]);
        assert_eq!(
            differences(&ours),
            [
                "org.example.config.Config: oneofs {} ours, {\"payload\"} upstream",
                "org.example.config.Config field 5: oneof \"\" ours, \"payload\" upstream",
                "org.example.config.Config field 6: oneof \"\" ours, \"payload\" upstream",
            ]
        );
    }

    #[test]
    fn missing_files_packages_and_misplaced_types_are_reported() {
        let mut ours = edited(&[("message Blob { bytes data = 1; }", "")]);
        let config = ours.get_mut("config/config.proto").expect("config file");
        *config = config.replace(
            "message Config {",
            "message Blob { bytes data = 1; }\nmessage Config {",
        );
        *config = config.replace("org.example.common.Blob blob", "Blob blob");
        ours.insert(
            "extra/extra.proto".into(),
            "syntax = \"proto3\";\npackage org.example.extra;\n".into(),
        );
        assert_eq!(
            differences(&ours),
            [
                "org.example.config.Config field 5: type \"org.example.config.Blob\" ours, \"org.example.common.Blob\" upstream",
                "tree: file extra/extra.proto is not upstream",
                "tree: message org.example.common.Blob is missing",
                "tree: message org.example.config.Blob is not upstream",
            ]
        );
    }

    #[test]
    fn a_tree_that_does_not_compile_is_an_error() {
        let broken = tree(&[(
            "a.proto",
            "syntax = \"proto3\";\nmessage A { Missing m = 1; }\n",
        )]);
        assert!(compile(&broken).is_err());
    }
}
