//! `evectl`: decode EVE API messages to JSON, encode JSON back to protobuf,
//! and verify/unwrap signed AuthContainer envelopes.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use controller::{bench, pbuf};

#[derive(Parser)]
#[command(
    version,
    about = "Inspect EVE API messages (EVE's pbuf, for our stack)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Binary protobuf -> JSON.
    Decode {
        /// Message type, full (org.lfedge.eve.config.EdgeDevConfig) or short (EdgeDevConfig).
        #[arg(long = "type", short = 't')]
        type_name: String,
        /// Input file, or `-` for stdin.
        #[arg(default_value = "-")]
        input: PathBuf,
    },
    /// JSON -> binary protobuf (written to stdout unless --output).
    Encode {
        /// Message type, full or short name.
        #[arg(long = "type", short = 't')]
        type_name: String,
        /// Input file, or `-` for stdin.
        #[arg(default_value = "-")]
        input: PathBuf,
        /// Output file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Verify an AuthContainer and unwrap its payload.
    Verify {
        /// Signer certificate (PEM). Without it, the envelope's embedded senderCert is used.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Print the payload as JSON of this type instead of raw bytes.
        #[arg(long = "type", short = 't')]
        type_name: Option<String>,
        /// Input file, or `-` for stdin.
        #[arg(default_value = "-")]
        input: PathBuf,
    },
    /// List the message types evectl knows.
    Types,
    /// Time EdgeDevConfig encode/decode and AuthContainer sign/verify.
    Bench {
        /// Iterations per operation.
        #[arg(long, default_value_t = 2000)]
        iterations: u32,
    },
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Decode(#[from] pbuf::DecodeError),
    #[error(transparent)]
    Encode(#[from] pbuf::EncodeError),
    #[error(transparent)]
    Verify(#[from] pbuf::VerifyError),
    #[error("{0}: input is not UTF-8 JSON")]
    NotUtf8(String),
}

fn read_input(path: &PathBuf) -> Result<Vec<u8>, CliError> {
    let name = path.display().to_string();
    let io = |source| CliError::Io {
        path: name.clone(),
        source,
    };
    if name == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).map_err(io)?;
        Ok(buf)
    } else {
        std::fs::read(path).map_err(io)
    }
}

fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|source| CliError::Io {
            path: "stdout".into(),
            source,
        })
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Decode { type_name, input } => {
            let json = pbuf::decode_to_json(&type_name, &read_input(&input)?)?;
            write_stdout(json.as_bytes())
        }
        Command::Encode {
            type_name,
            input,
            output,
        } => {
            let raw = read_input(&input)?;
            let text = String::from_utf8(raw)
                .map_err(|_| CliError::NotUtf8(input.display().to_string()))?;
            let bytes = pbuf::encode_from_json(&type_name, &text)?;
            match output {
                Some(path) => std::fs::write(&path, bytes).map_err(|source| CliError::Io {
                    path: path.display().to_string(),
                    source,
                }),
                None => write_stdout(&bytes),
            }
        }
        Command::Verify {
            cert,
            type_name,
            input,
        } => {
            let cert = cert.as_ref().map(read_input).transpose()?;
            let out =
                pbuf::verify_envelope(&read_input(&input)?, cert.as_deref(), type_name.as_deref())?;
            eprintln!("signature OK ({} payload bytes)", out.payload.len());
            match out.json {
                Some(json) => write_stdout(json.as_bytes()),
                None => write_stdout(&out.payload),
            }
        }
        Command::Types => {
            write_stdout(format!("{}\n", pbuf::message_types().join("\n")).as_bytes())
        }
        Command::Bench { iterations } => {
            let mut report = String::new();
            for (name, per_op) in bench::run_proto_bench(iterations) {
                report.push_str(&format!("{name:<45} {:>10} ns/op\n", per_op.as_nanos()));
            }
            write_stdout(report.as_bytes())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("evectl: {e}");
            ExitCode::FAILURE
        }
    }
}
