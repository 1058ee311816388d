//! The client side of the agent channel.

use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::protocol::{
    Envelope, MAX_REPLY_BYTES, PROTOCOL_VERSION, Reply, Request, recv_frame, recv_reply, send_frame,
};

/// How long the agent has to give its first answer beyond the work asked of it. It answers a
/// status, stream or connect request at once; one that accepts and stays silent (stopped with
/// SIGSTOP, or hung) must not hold ssh, VS Code or a TAB press forever.
pub const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// Reads the agent's first reply on `stream` within `limit`, then lets later reads wait as
/// long as the work takes (a command's end, a stream's end).
fn first_reply(stream: &UnixStream, limit: Duration) -> io::Result<Reply> {
    stream.set_read_timeout(Some(limit))?;
    let reply = recv_reply(stream).map_err(silent_agent)?;
    stream.set_read_timeout(None)?;
    Ok(reply)
}

/// A read that timed out becomes `TimedOut`, whatever the OS called it.
fn silent_agent(error: io::Error) -> io::Error {
    if matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the agent accepted the connection but did not answer within {} s",
                ANSWER_WAIT.as_secs()
            ),
        )
    } else {
        error
    }
}

/// Talks to one sandbox's agent over its Unix socket.
#[derive(Debug, Clone)]
pub struct AgentClient {
    socket: PathBuf,
}

impl AgentClient {
    /// A client for the agent listening on `socket`.
    pub fn new(socket: PathBuf) -> Self {
        Self { socket }
    }

    /// Sends one request (with `fds` attached) and reads the first reply.
    pub fn request(&self, request: Request, fds: &[RawFd]) -> io::Result<(UnixStream, Reply)> {
        let limit = match &request {
            Request::Exec { timeout_ms, .. } => {
                Duration::from_millis(*timeout_ms).saturating_add(ANSWER_WAIT)
            }
            _ => ANSWER_WAIT,
        };
        let stream = UnixStream::connect(&self.socket)?;
        let envelope = Envelope {
            v: PROTOCOL_VERSION,
            request,
        };
        send_frame(&stream, &envelope, fds)?;
        let reply = first_reply(&stream, limit)?;
        Ok((stream, reply))
    }

    /// Whether something accepts connections on the socket.
    pub fn is_listening(&self) -> bool {
        UnixStream::connect(&self.socket).is_ok()
    }

    /// Asks for boot and sshd state.
    pub fn status(&self) -> io::Result<Reply> {
        Ok(self.request(Request::Status, &[])?.1)
    }

    /// Runs a script.
    pub fn exec(&self, script: &str, timeout: Duration) -> io::Result<Reply> {
        let request = Request::Exec {
            script: script.to_owned(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        Ok(self.request(request, &[])?.1)
    }

    /// Runs `script` on the caller's `stdio` (stdin, stdout, stderr) and returns its exit code
    /// when it ends. Closing this process's end (being killed, say) kills the command.
    pub fn run(&self, script: &str, stdio: [RawFd; 3]) -> io::Result<i32> {
        let request = Request::Run {
            script: script.to_owned(),
        };
        let control = match self.request(request, &stdio)? {
            (control, Reply::RunStarted) => control,
            (_, Reply::Error { message }) => return Err(io::Error::other(message)),
            (_, other) => return Err(io::Error::other(format!("unexpected reply {other:?}"))),
        };
        match recv_reply(&control)? {
            Reply::RunEnded { exit_code } => Ok(exit_code),
            Reply::Error { message } => Err(io::Error::other(message)),
            other => Err(io::Error::other(format!("unexpected reply {other:?}"))),
        }
    }

    /// Hands `fds` to a fresh `sshd -i`; returns the control connection, which reports the end.
    pub fn stream(&self, fds: &[RawFd]) -> io::Result<UnixStream> {
        match self.request(Request::Stream { port: 22 }, fds)? {
            (control, Reply::StreamStarted) => Ok(control),
            (_, Reply::Error { message }) => Err(io::Error::other(message)),
            (_, other) => Err(io::Error::other(format!("unexpected reply {other:?}"))),
        }
    }

    /// A connection to a running `sshd -i` of the sandbox, ready for an ssh client.
    pub fn connect(&self) -> io::Result<OwnedFd> {
        let stream = UnixStream::connect(&self.socket)?;
        let envelope = Envelope {
            v: PROTOCOL_VERSION,
            request: Request::Connect { port: 22 },
        };
        send_frame(&stream, &envelope, &[])?;
        stream.set_read_timeout(Some(ANSWER_WAIT))?;
        let frame = recv_frame(&stream, MAX_REPLY_BYTES)
            .map_err(silent_agent)?
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the agent closed the connection",
                )
            })?;
        let reply: Reply = serde_json::from_slice(frame.body.as_deref().unwrap_or_default())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        match (reply, frame.fds) {
            (Reply::Connected, mut fds) if fds.len() == 1 => Ok(fds.remove(0)),
            (Reply::Error { message }, _) => Err(io::Error::other(message)),
            (other, _) => Err(io::Error::other(format!("unexpected reply {other:?}"))),
        }
    }

    /// Asks the agent to stop the sandbox.
    pub fn shutdown(&self) -> io::Result<()> {
        self.request(Request::Shutdown, &[]).map(|_| ())
    }
}
