//! `km vscode start`: write the Host entry, then forward 127.0.0.1:<port> to the sandbox's sshd
//! in the foreground until Ctrl-C.
//!
//! Each accepted connection is handed whole to a fresh `sshd -i` in the sandbox (the socket
//! itself is passed), so VS Code's many parallel connections each get their own session and no
//! byte is copied by km.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use km_core::platform::{Liveness, Platform, PlatformError};
use km_core::record::{SandboxRecord, Status};

use crate::cli::VscodeStartArgs;
use crate::context::Context;
use crate::error::{CommandError, CommandResult};
use crate::platforms;
use crate::ssh_entries::{self, Transport};
use crate::ui;

use super::{ready_for_ssh, require_enabled};

const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(8);
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

pub(crate) fn run(context: &Context, args: &VscodeStartArgs) -> CommandResult<ExitCode> {
    let store = platforms::open_store(context)?;
    let record = context.resolve(store.as_ref(), &args.sandbox)?;
    require_enabled(&record)?;
    let id = record.id.clone();
    let port = args.local_port;
    // Bound before the checks, so a taken port is the first thing reported.
    let listener = if args.proxy {
        None
    } else {
        Some(
            TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).map_err(|e| {
                CommandError::user(format!(
                    "local port {port} is already in use — pick a different one with --local-port"
                ))
                .cause(e)
                .hint(format!(
                    "km vscode start {id} --local-port {}, or km vscode start {id} --proxy (no port at all)",
                    suggest_port(port)
                ))
            })?,
        )
    };
    // `--local-port 0` lets the system pick a free port: the entry names the one bound.
    let port = listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map_or(port, |address| address.port());
    let platform = platforms::platform_for(context, &record)?;
    ready_for_ssh(context, store.as_ref(), platform.as_ref(), &record)?;
    super::server::place_before_connecting(
        context,
        platform.as_ref(),
        &record,
        args.place_server,
        "code",
    )?;
    let transport = match listener {
        Some(_) => Transport::Port(port),
        None => Transport::Proxy {
            fdpass: platform.streams_outlive_the_caller(),
        },
    };
    let entry = ssh_entries::host_entry(context, &id, transport, &platform.login_user(&record))?;
    ssh_entries::upsert_host(context, &entry)?;
    ui::status(&format!(
        "✓ Updated ~/.ssh/config (Host: {})",
        id.host_alias()
    ));
    let Some(listener) = listener else {
        ui::status("✓ Connections go through `km proxy` (ProxyCommand): no tunnel to keep open");
        ui::status("");
        ui::status(&format!(
            "In VS Code: F1 → \"Remote-SSH: Connect to Host…\" → {}",
            id.host_alias()
        ));
        ui::status(&format!("From a terminal: ssh {}", id.host_alias()));
        return Ok(ExitCode::SUCCESS);
    };
    ui::status(&format!("✓ Forwarding localhost:{port} → sandbox:22"));
    ui::status("");
    ui::status(&format!(
        "In VS Code: F1 → \"Remote-SSH: Connect to Host…\" → {}",
        id.host_alias()
    ));
    ui::status(&format!("From a terminal: ssh {}", id.host_alias()));
    ui::status(
        "The tunnel auto-reconnects if it drops; press Ctrl-C to close it (sshd keeps running on the sandbox).",
    );
    ui::status("");
    serve(context, listener, platform, record)
}

fn suggest_port(port: u16) -> u16 {
    (port.saturating_add(1)..=u16::MAX)
        .chain(1024..port)
        .find(|p| TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, *p))).is_ok())
        .unwrap_or(22122)
}

/// Why the tunnel gave up.
enum Ending {
    Interrupted,
    Gone(CommandError),
}

fn serve(
    context: &Context,
    listener: TcpListener,
    platform: Arc<dyn Platform>,
    record: SandboxRecord,
) -> CommandResult<ExitCode> {
    listener
        .set_nonblocking(true)
        .map_err(|e| CommandError::user("cannot set up the tunnel's listening socket").cause(e))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CommandError::user("cannot start the tunnel's runtime").cause(e))?;
    let record = Arc::new(record);
    let ending = runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        // A connection that fails for a reason no retry can fix (expired credentials) ends
        // the tunnel with that reason.
        let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::unbounded_channel::<PlatformError>();
        let mut backoff = BACKOFF_START;
        let mut down = false;
        let mut next_check = tokio::time::Instant::now() + HEALTH_INTERVAL;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok::<_, std::io::Error>(Ending::Interrupted),
                Some(fatal) = fatal_rx.recv() => return Ok(Ending::Gone(fatal.into())),
                accepted = listener.accept() => {
                    let Ok((socket, peer)) = accepted else { continue };
                    // Any local user can reach 127.0.0.1: only the operator's own connections
                    // reach the sandbox (and count against its cap on logins in progress).
                    if let Err(refused) = operators_own(&socket, peer) {
                        drop(socket);
                        ui::warn(&refused);
                        continue;
                    }
                    let _ = socket.set_nodelay(true);
                    let socket = socket.into_std()?;
                    let platform = Arc::clone(&platform);
                    let record = Arc::clone(&record);
                    let fatal_tx = fatal_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Err(fatal) = hand_off(platform.as_ref(), &record, &socket) {
                            let _ = fatal_tx.send(fatal);
                        }
                    });
                }
                _ = tokio::time::sleep_until(next_check) => {
                    // A platform may block (an AWS call), so ask off the tunnel's threads.
                    let reachable = {
                        let platform = Arc::clone(&platform);
                        let record = Arc::clone(&record);
                        tokio::task::spawn_blocking(move || platform.liveness(&record))
                            .await
                            .unwrap_or(Ok(Liveness::Stopped))
                    };
                    let alive = match reachable {
                        Ok(liveness) => liveness == Liveness::Running,
                        Err(fatal @ PlatformError::Credentials(_)) => return Ok(Ending::Gone(fatal.into())),
                        Err(_) => false,
                    };
                    if alive {
                        if down {
                            ui::status(&format!("✓ Sandbox {} is reachable again; forwarding resumed", record.id));
                        }
                        down = false;
                        backoff = BACKOFF_START;
                        next_check = tokio::time::Instant::now() + HEALTH_INTERVAL;
                        continue;
                    }
                    // The store may be remote (DynamoDB): ask outside the tunnel's runtime.
                    if let Some(error) = tokio::task::block_in_place(|| why_gone(context, &record)) {
                        return Ok(Ending::Gone(error));
                    }
                    ui::warn(&format!(
                        "sandbox {} is not answering; reconnecting in {:.1}s",
                        record.id,
                        backoff.as_secs_f32()
                    ));
                    down = true;
                    next_check = tokio::time::Instant::now() + backoff;
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                }
            }
        }
    })
    .map_err(|e| CommandError::user(format!("the tunnel on 127.0.0.1 for {} failed", record.id)).cause(e))?;
    match ending {
        Ending::Interrupted => {
            ui::status(&format!(
                "✓ Tunnel closed; the Host entry {} stays for next time",
                record.id.host_alias()
            ));
            Ok(ExitCode::SUCCESS)
        }
        Ending::Gone(error) => Err(error),
    }
}

/// Whether the connection from `peer` was made by this operator's own uid; says why not.
fn operators_own(socket: &tokio::net::TcpStream, peer: SocketAddr) -> Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Ok(());
    }
    let me = nix::unistd::geteuid().as_raw();
    let owner = socket
        .local_addr()
        .ok()
        .and_then(|ours| km_local::tcp_peer::peer_uid(ours, peer));
    match owner {
        Some(uid) if uid == me => Ok(()),
        Some(uid) => Err(format!(
            "closed a connection from {peer} made by another local user (uid {uid}): the tunnel serves only uid {me}"
        )),
        None => Err(format!(
            "closed a connection from {peer}: the kernel does not say which user made it, so it is not served"
        )),
    }
}

/// Hands one accepted connection to the sandbox and waits for its session to end (a platform
/// whose stream is a live process is reaped here). Returns only errors that end the tunnel.
fn hand_off(
    platform: &dyn Platform,
    record: &SandboxRecord,
    socket: &std::net::TcpStream,
) -> Result<(), PlatformError> {
    let ended = platform
        .open_stream(record, &[socket.as_raw_fd()])
        .and_then(|session| session.wait());
    match ended {
        Ok(_) | Err(PlatformError::NotRunning(_)) => Ok(()),
        Err(fatal @ PlatformError::Credentials(_)) => Err(fatal),
        Err(e) => {
            ui::warn(&format!("a connection to {} failed: {e}", record.id));
            Ok(())
        }
    }
}

/// The reason to stop retrying, if the sandbox was stopped or destroyed on purpose.
fn why_gone(context: &Context, record: &SandboxRecord) -> Option<CommandError> {
    let id = &record.id;
    let store = platforms::open_store(context).ok()?;
    match store.get(id) {
        Ok(None) => Some(CommandError::user(format!(
            "sandbox {id} was destroyed; the tunnel stops"
        ))),
        Ok(Some(current)) if current.status == Status::Stopped => Some(
            CommandError::user(format!("sandbox {id} was stopped; the tunnel stops"))
                .hint(format!("km resume {id} && km vscode start {id}")),
        ),
        _ => None,
    }
}
