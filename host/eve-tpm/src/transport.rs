//! Moving marshalled TPM 2.0 commands to a TPM and responses back.
//!
//! Two TPMs exist for us: the kernel's resource-managed character device
//! (`/dev/tpmrm0`) on a board, and swtpm's UnixIO socket in development and
//! tests. Both carry the raw command bytes of the TPM 2.0 specification,
//! part 3, with no framing of their own.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Size of a TPM response header: tag, size, response code.
pub const RESPONSE_HEADER_LEN: usize = 10;
/// Largest response accepted. PC-client TPMs answer at most 4096 bytes;
/// the margin allows a larger swtpm buffer without letting a broken peer
/// make us allocate at will.
pub const MAX_RESPONSE_LEN: usize = 16 * 1024;
/// How long one command may take. Key generation is the slowest command we
/// send and takes well under a second on swtpm and on discrete TPMs.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Something that executes one TPM command at a time.
pub trait TpmTransport {
    /// Sends one complete command and returns the complete response.
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError>;
}

impl<T: TpmTransport + ?Sized> TpmTransport for &mut T {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        (**self).transact(command)
    }
}

impl<T: TpmTransport + ?Sized> TpmTransport for Box<T> {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        (**self).transact(command)
    }
}

/// Why a command could not be exchanged with the TPM.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Opening the device or connecting to the socket failed.
    #[error("cannot open TPM at {path}: {source}")]
    Open {
        /// The device or socket.
        path: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
    /// Writing the command or reading the response failed.
    #[error("TPM I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The response header announces a size below the header's own or
    /// above [`MAX_RESPONSE_LEN`].
    #[error("TPM response announces {0} bytes")]
    BadResponseSize(u32),
}

/// The kernel's TPM character device. `/dev/tpmrm0` goes through the
/// kernel's resource manager, which flushes our transient objects and
/// sessions if we die and lets other users share the TPM.
#[derive(Debug)]
pub struct DeviceTransport {
    device: File,
}

impl DeviceTransport {
    /// The resource-managed device of the first TPM.
    pub const DEFAULT_PATH: &'static str = "/dev/tpmrm0";

    /// Opens the device read-write.
    pub fn open(path: &Path) -> Result<Self, TransportError> {
        let device = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| TransportError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(DeviceTransport { device })
    }
}

impl TpmTransport for DeviceTransport {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        // The driver takes a command in one write and hands the whole
        // response back in one read.
        self.device.write_all(command)?;
        let mut response = vec![0; MAX_RESPONSE_LEN];
        let n = self.device.read(&mut response)?;
        response.truncate(n);
        check_announced_size(&response)?;
        Ok(response)
    }
}

/// swtpm's data channel over a Unix socket. swtpm serves one connection at
/// a time, so the connection is kept open and reopened after a failure (the
/// next command goes out on a fresh connection, so a restarted swtpm is
/// picked up).
#[derive(Debug)]
pub struct SocketTransport {
    path: PathBuf,
    stream: Option<UnixStream>,
}

impl SocketTransport {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Self, TransportError> {
        let mut transport = SocketTransport {
            path: path.to_owned(),
            stream: None,
        };
        transport.stream()?;
        Ok(transport)
    }

    fn stream(&mut self) -> Result<&mut UnixStream, TransportError> {
        if self.stream.is_none() {
            let open = |source| TransportError::Open {
                path: self.path.clone(),
                source,
            };
            let stream = UnixStream::connect(&self.path).map_err(open)?;
            stream
                .set_read_timeout(Some(COMMAND_TIMEOUT))
                .map_err(open)?;
            stream
                .set_write_timeout(Some(COMMAND_TIMEOUT))
                .map_err(open)?;
            self.stream = Some(stream);
        }
        Ok(self.stream.as_mut().expect("connected just above"))
    }

    fn exchange(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let stream = self.stream()?;
        stream.write_all(command)?;
        let mut response = vec![0; RESPONSE_HEADER_LEN];
        stream.read_exact(&mut response)?;
        let size = check_announced_size(&response)?;
        response.resize(size, 0);
        stream.read_exact(&mut response[RESPONSE_HEADER_LEN..])?;
        Ok(response)
    }
}

impl TpmTransport for SocketTransport {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let result = self.exchange(command);
        if result.is_err() {
            // The stream may hold half a response; never reuse it.
            self.stream = None;
        }
        result
    }
}

/// Checks the size field of a response header (which the caller has at
/// least begun to read) and returns it.
fn check_announced_size(response: &[u8]) -> Result<usize, TransportError> {
    let field = response
        .get(2..6)
        .ok_or(TransportError::BadResponseSize(0))?;
    let size = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
    match usize::try_from(size) {
        Ok(n) if (RESPONSE_HEADER_LEN..=MAX_RESPONSE_LEN).contains(&n) => Ok(n),
        _ => Err(TransportError::BadResponseSize(size)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn socket_transport_reads_exactly_one_response() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tpm.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut command = [0u8; 12];
            conn.read_exact(&mut command).unwrap();
            // A good 12-byte response, then a header announcing 5 bytes.
            conn.write_all(&[0x80, 1, 0, 0, 0, 12, 0, 0, 0, 0, 0xaa, 0xbb])
                .unwrap();
            conn.read_exact(&mut command).unwrap();
            conn.write_all(&[0x80, 1, 0, 0, 0, 5, 0, 0, 0, 0]).unwrap();
            // The client must come back on a new connection.
            let (mut conn, _) = listener.accept().unwrap();
            conn.read_exact(&mut command).unwrap();
            // A header, then the peer goes away mid-response.
            conn.write_all(&[0x80, 1, 0, 0, 0, 40, 0, 0]).unwrap();
        });
        let mut transport = SocketTransport::connect(&path).unwrap();
        let command = [0x80, 1, 0, 0, 0, 12, 0, 0, 1, 0x44, 0, 0];
        assert_eq!(
            transport.transact(&command).unwrap(),
            [0x80, 1, 0, 0, 0, 12, 0, 0, 0, 0, 0xaa, 0xbb]
        );
        assert!(matches!(
            transport.transact(&command),
            Err(TransportError::BadResponseSize(5))
        ));
        assert!(matches!(
            transport.transact(&command),
            Err(TransportError::Io(_))
        ));
        server.join().unwrap();
    }

    #[test]
    fn oversized_announcements_are_refused() {
        assert!(matches!(
            check_announced_size(&[0x80, 1, 0xff, 0xff, 0xff, 0xff]),
            Err(TransportError::BadResponseSize(u32::MAX))
        ));
        assert!(matches!(
            check_announced_size(&[0x80]),
            Err(TransportError::BadResponseSize(0))
        ));
        assert_eq!(check_announced_size(&[0x80, 1, 0, 0, 0, 10]).unwrap(), 10);
    }

    #[test]
    fn missing_device_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            DeviceTransport::open(&dir.path().join("tpmrm9")),
            Err(TransportError::Open { .. })
        ));
        assert!(matches!(
            SocketTransport::connect(&dir.path().join("none.sock")),
            Err(TransportError::Open { .. })
        ));
    }
}
