//! The agent channel's wire format: version-tagged JSON frames with a 4-byte length prefix,
//! and file descriptors passed alongside a request with SCM_RIGHTS.
//!
//! A `stream` request carries the client's connection itself, so the sandbox's `sshd -i` reads
//! and writes the caller's socket directly and no process copies the bytes in between.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// The largest request the agent reads; anything bigger gets an error reply.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;
/// The largest reply a client accepts (exec output is capped below this).
pub const MAX_REPLY_BYTES: usize = 8 * 1024 * 1024;
/// At most this many descriptors ride on one request.
pub const MAX_FDS: usize = 3;
/// The most descriptors the kernel passes in one message (Linux's SCM_MAX_FD). Room is made
/// for all of them so that an over-full message is received, owned and closed, never left
/// half-installed in the receiver.
const MAX_FDS_ON_THE_WIRE: usize = 253;

/// A request to the agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Run a shell script in the sandbox (the local analog of SSM SendCommand).
    Exec {
        /// The script, run by `/bin/sh -c`.
        script: String,
        /// Kill it after this many milliseconds.
        timeout_ms: u64,
    },
    /// Run a shell script on the attached stdin, stdout and stderr (three descriptors), the way
    /// `ssh host cmd` would: bytes flow straight between the caller's descriptors and the
    /// command, and the command is killed if the caller's connection closes first.
    Run {
        /// The script, run by `/bin/sh -c` in the sandbox user's home.
        script: String,
    },
    /// Hand the attached descriptor(s) to a fresh `sshd -i` for the given port (only 22).
    Stream {
        /// The sandbox port; the agent serves 22.
        port: u16,
    },
    /// Hand back one end of a socket pair whose other end a running `sshd -i` already serves
    /// (for `km proxy --fdpass`): sshd's start-up happened before the caller asked.
    Connect {
        /// The sandbox port; the agent serves 22.
        port: u16,
    },
    /// Report boot and sshd state.
    Status,
    /// Stop every process of the sandbox and exit.
    Shutdown,
}

/// A request as framed on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// The sender's protocol version.
    pub v: u32,
    /// The request.
    #[serde(flatten)]
    pub request: Request,
}

/// A reply from the agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// The request failed; the agent keeps serving.
    Error {
        /// Why.
        message: String,
    },
    /// A script ran.
    Exec {
        /// Its exit code (-1 when killed by a signal).
        exit_code: i32,
        /// Captured standard output (lossy UTF-8, capped).
        stdout: String,
        /// Captured standard error (lossy UTF-8, capped).
        stderr: String,
        /// Whether the timeout killed it.
        timed_out: bool,
    },
    /// Boot and sshd state.
    Status {
        /// The sandbox ID the agent serves.
        id: String,
        /// The agent's process ID.
        pid: u32,
        /// Whether first boot (userdata) completed.
        booted: bool,
        /// Why first boot failed, if it did.
        boot_error: Option<String>,
        /// Whether `sshd -t` accepts the sandbox's sshd config.
        sshd_ok: bool,
        /// What `sshd -t` said when it refused.
        #[serde(default)]
        sshd_error: Option<String>,
    },
    /// The command of a `run` request started on the passed descriptors.
    RunStarted,
    /// That command ended.
    RunEnded {
        /// Its exit code, or 128 + the signal that killed it, as a shell reports it.
        exit_code: i32,
    },
    /// The attached descriptor is a connection to a running sshd (the reply to `connect`).
    Connected,
    /// sshd now owns the passed connection.
    StreamStarted,
    /// That sshd exited.
    StreamEnded {
        /// Its exit code.
        exit_code: i32,
    },
    /// The agent is stopping the sandbox.
    ShuttingDown,
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Sends one framed message, with `fds` attached to its first byte.
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use km_local::protocol::{Envelope, MAX_REQUEST_BYTES, PROTOCOL_VERSION, Request, recv_frame, send_frame};
///
/// let (client, agent) = UnixStream::pair().unwrap();
/// send_frame(&client, &Envelope { v: PROTOCOL_VERSION, request: Request::Status }, &[]).unwrap();
/// let frame = recv_frame(&agent, MAX_REQUEST_BYTES).unwrap().unwrap();
/// assert_eq!(frame.body.unwrap(), br#"{"v":1,"op":"status"}"#);
/// ```
pub fn send_frame<T: Serialize>(stream: &UnixStream, message: &T, fds: &[RawFd]) -> io::Result<()> {
    let body = serde_json::to_vec(message).map_err(|e| invalid(e.to_string()))?;
    let length = u32::try_from(body.len())
        .map_err(|_| invalid("frame too large"))?
        .to_be_bytes();
    let iov = [IoSlice::new(&length), IoSlice::new(&body)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    let sent = sendmsg::<()>(stream.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None)
        .map_err(io::Error::from)?;
    let total = length.len() + body.len();
    if sent < total {
        // The descriptors went with the first bytes; the rest is plain data.
        let mut all = Vec::with_capacity(total);
        all.extend_from_slice(&length);
        all.extend_from_slice(&body);
        (&*stream).write_all(&all[sent..])?;
    }
    Ok(())
}

/// Sends `fd` over the Unix socket `socket` the way OpenSSH's `ProxyUseFdpass` expects it:
/// one data byte carrying one descriptor.
pub fn pass_descriptor(socket: RawFd, fd: RawFd) -> io::Result<()> {
    let byte = [0u8; 1];
    let iov = [IoSlice::new(&byte)];
    let fds = [fd];
    let rights = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(socket, &iov, &rights, MsgFlags::empty(), None).map_err(io::Error::from)?;
    Ok(())
}

/// What [`recv_frame`] read: the body, or a body too large to read, plus any descriptors.
#[derive(Debug)]
pub struct Frame {
    /// The body bytes, or `None` if the frame exceeded the limit (its bytes were not read).
    pub body: Option<Vec<u8>>,
    /// Descriptors that arrived with it.
    pub fds: Vec<OwnedFd>,
}

/// Reads one frame of at most `limit` bytes; `Ok(None)` at a clean end of stream.
pub fn recv_frame(stream: &UnixStream, limit: usize) -> io::Result<Option<Frame>> {
    let mut length = [0u8; 4];
    let mut cmsg_space = nix::cmsg_space!([RawFd; MAX_FDS_ON_THE_WIRE]);
    let (read, raw_fds, truncated) = {
        let mut iov = [IoSliceMut::new(&mut length)];
        let message = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let mut raw_fds = Vec::new();
        let truncated = message.flags.contains(MsgFlags::MSG_CTRUNC);
        if let Ok(cmsgs) = message.cmsgs() {
            for cmsg in cmsgs {
                if let ControlMessageOwned::ScmRights(received) = cmsg {
                    raw_fds.extend(received);
                }
            }
        }
        (message.bytes, raw_fds, truncated)
    };
    // Owned (and so closed on every path below) before anything can fail.
    let fds = adopt(raw_fds);
    if truncated || fds.len() > MAX_FDS {
        return Err(invalid(format!(
            "a request carries at most {MAX_FDS} descriptors"
        )));
    }
    if read == 0 {
        return Ok(None);
    }
    if read < length.len() {
        (&*stream).read_exact(&mut length[read..])?;
    }
    let size = u32::from_be_bytes(length) as usize;
    if size > limit {
        return Ok(Some(Frame { body: None, fds }));
    }
    let mut body = vec![0u8; size];
    (&*stream).read_exact(&mut body)?;
    Ok(Some(Frame {
        body: Some(body),
        fds,
    }))
}

/// Takes ownership of descriptors the kernel just installed for us.
#[allow(unsafe_code)]
fn adopt(raw: Vec<RawFd>) -> Vec<OwnedFd> {
    raw.into_iter()
        // SAFETY: SCM_RIGHTS installed each descriptor fresh in this process; nothing else
        // owns it, so exactly one OwnedFd takes responsibility for closing it.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect()
}

/// Reads and decodes one reply.
pub fn recv_reply(stream: &UnixStream) -> io::Result<Reply> {
    let frame = recv_frame(stream, MAX_REPLY_BYTES)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the agent closed the connection",
        )
    })?;
    let body = frame.body.ok_or_else(|| invalid("reply too large"))?;
    serde_json::from_slice(&body).map_err(|e| invalid(format!("malformed reply: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_roundtrip_with_descriptors() {
        let (a, b) = UnixStream::pair().unwrap();
        let (keep, _other) = UnixStream::pair().unwrap();
        let envelope = Envelope {
            v: PROTOCOL_VERSION,
            request: Request::Stream { port: 22 },
        };
        send_frame(&a, &envelope, &[keep.as_raw_fd()]).unwrap();
        let frame = recv_frame(&b, MAX_REQUEST_BYTES).unwrap().unwrap();
        assert_eq!(frame.fds.len(), 1);
        let decoded: Envelope = serde_json::from_slice(&frame.body.unwrap()).unwrap();
        assert_eq!(decoded.request, Request::Stream { port: 22 });
    }

    fn open_descriptors() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[test]
    fn too_many_descriptors_are_refused_and_closed() {
        let (a, b) = UnixStream::pair().unwrap();
        let spare: Vec<UnixStream> = (0..4).map(|_| UnixStream::pair().unwrap().0).collect();
        let raw: Vec<RawFd> = spare.iter().map(AsRawFd::as_raw_fd).collect();
        let before = open_descriptors();
        for _ in 0..20 {
            send_frame(&a, &"x", &raw).unwrap();
            assert!(recv_frame(&b, MAX_REQUEST_BYTES).is_err());
            // The refused frame's body is still queued; drain it for the next round.
            let mut body = [0u8; 3];
            (&b).read_exact(&mut body).unwrap();
        }
        // 80 descriptors would leak without the fix; other tests' files come and go meanwhile.
        assert!(
            open_descriptors() < before + 20,
            "descriptors leaked: {before} before, {} after",
            open_descriptors()
        );
    }

    #[test]
    fn oversized_frames_are_flagged_not_read() {
        let (a, b) = UnixStream::pair().unwrap();
        send_frame(&a, &"x".repeat(1000), &[]).unwrap();
        let frame = recv_frame(&b, 10).unwrap().unwrap();
        assert!(frame.body.is_none());
    }
}
