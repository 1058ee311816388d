//! `km list`: every sandbox, with its status checked against reality.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use km_core::platform::{Boundary, Liveness};
use km_core::record::{Creator, SandboxRecord, Status};
use km_local::process_tree::ProcessIdentity;

use crate::cli::ListArgs;
use crate::context::Context;
use crate::error::CommandResult;
use crate::platforms;
use crate::ui;

/// What the record says, corrected by whether the sandbox really runs (`running`, asked only
/// for records that claim to have booted). A create that never finished is `starting` while its
/// creator runs and `failed` after, never `running`.
fn live_status(record: &SandboxRecord, running: impl FnOnce() -> bool) -> Status {
    match record.status {
        Status::Starting => {
            // A manager elsewhere (Lambda) names the time it ends by; a process here, itself.
            let working = match record.resources.creator {
                Some(Creator::Until { until_ms }) => {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis());
                    now < u128::from(until_ms)
                }
                Some(Creator::Process { pid, started }) => {
                    ProcessIdentity { pid, started }.is_alive()
                }
                Some(Creator::Other(_)) | None => false,
            };
            if working {
                Status::Starting
            } else {
                Status::Failed
            }
        }
        Status::Running | Status::Stopped => {
            if running() {
                Status::Running
            } else {
                Status::Stopped
            }
        }
        Status::Failed => Status::Failed,
    }
}

pub(crate) fn run(context: &Context, args: &ListArgs) -> CommandResult<ExitCode> {
    let store = platforms::open_store(context)?;
    let records = store.list()?;
    // Each platform is asked once about all of its sandboxes (one EC2 call per region, not
    // one per sandbox); a record whose platform this build lacks shows what was recorded.
    let mut by_platform: HashMap<String, Vec<&SandboxRecord>> = HashMap::new();
    for record in records
        .iter()
        .filter(|r| matches!(r.status, Status::Running | Status::Stopped))
    {
        by_platform
            .entry(record.platform.clone())
            .or_default()
            .push(record);
    }
    let mut running: HashMap<String, bool> = HashMap::new();
    let mut boundaries: HashMap<String, Boundary> = HashMap::new();
    for group in by_platform.values() {
        let Ok(platform) = platforms::platform_for(context, group[0]) else {
            continue;
        };
        match platform.states(group) {
            Ok(states) => {
                for (record, liveness) in group.iter().zip(states) {
                    running.insert(record.id.to_string(), liveness == Liveness::Running);
                }
            }
            // Shown as recorded, and said so: an unanswerable platform is not "stopped".
            Err(error) => ui::warn(&format!(
                "cannot ask the {} platform whether its {} sandbox(es) run, so they show their recorded status: {error}",
                platform.name(),
                group.len()
            )),
        }
        for record in group {
            boundaries.insert(record.id.to_string(), platform.boundary(record));
        }
    }
    let boundary = |record: &SandboxRecord| boundaries.get(record.id.as_str()).copied();
    let rows: Vec<(SandboxRecord, Status)> = records
        .into_iter()
        .map(|record| {
            let status = match running.get(record.id.as_str()) {
                Some(&runs) => live_status(&record, || runs),
                None if matches!(record.status, Status::Running | Status::Stopped) => record.status,
                None => live_status(&record, || false),
            };
            (record, status)
        })
        .collect();
    // Remote creates whose record the manager has not written yet: shown, never hidden.
    let pending: Vec<platforms::PendingCreate> = platforms::pending_create_requests(context)
        .into_iter()
        .filter(|p| !rows.iter().any(|(r, _)| r.id.as_str() == p.sandbox))
        .collect();
    if args.json {
        let mut items: Vec<serde_json::Value> = rows
            .iter()
            .map(|(record, status)| {
                serde_json::json!({
                    "number": record.number,
                    "id": record.id,
                    "alias": record.alias,
                    "status": status,
                    "locked": record.locked,
                    "locked_by": record.lock_holder.as_ref().map(|h| h.by.clone()),
                    "locked_since": record.lock_holder.as_ref().map(|h| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(h.since)).to_string()),
                    "profile": record.profile,
                    "platform": record.platform,
                    "created_at": humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(record.created_at)).to_string(),
                    "vscode_enabled": record.vscode_enabled,
                    "key_fingerprint": record.key_fingerprint,
                    "isolation": boundary(record),
                })
            })
            .collect();
        items.extend(pending.iter().map(|p| {
            serde_json::json!({
                "number": null,
                "id": p.sandbox,
                "status": p.state,
                "requested_by": p.requested_by,
                "platform": p.platform,
            })
        }));
        ui::data(&serde_json::to_string_pretty(&items).unwrap_or_else(|_| "[]".into()));
        return Ok(ExitCode::SUCCESS);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut out = format!(
        "{:<4} {:<22} {:<20} {:<9} {:<8} {:<14} {:>5}\n",
        "#", "ID", "ALIAS", "STATUS", "PLATFORM", "PROFILE", "AGE"
    );
    for (record, status) in &rows {
        let alias = record.alias.as_ref().map_or("-", |a| a.as_str());
        let lock = match (&record.lock_holder, record.locked) {
            (Some(holder), _) => format!(
                " 🔒 {} {} ago",
                ui::printable(&holder.by),
                age(now.saturating_sub(holder.since))
            ),
            (None, true) => " 🔒".to_owned(),
            (None, false) => String::new(),
        };
        let exposed = match boundary(record) {
            Some(Boundary::None) => "  ⚠ not isolated: runs with your own access",
            _ => "",
        };
        out.push_str(&format!(
            "{:<4} {:<22} {:<20} {:<9} {:<8} {:<14} {:>5}{lock}{exposed}\n",
            record.number,
            record.id.as_str(),
            alias,
            status.as_str(),
            ui::printable(&record.platform),
            ui::printable(&record.profile),
            age(now.saturating_sub(record.created_at)),
        ));
    }
    for request in &pending {
        out.push_str(&format!(
            "{:<4} {:<22} {:<20} {:<9} {:<8} {:<14} {:>5}  (create requested by {}; the management function has not made it yet)\n",
            "-",
            ui::printable(&request.sandbox),
            "-",
            request.state,
            request.platform,
            "-",
            request
                .queued_at
                .map_or_else(|| "?".to_owned(), |at| age(now.saturating_sub(at))),
            ui::printable(request.requested_by.as_deref().unwrap_or("?")),
        ));
    }
    ui::data(out.trim_end());
    Ok(ExitCode::SUCCESS)
}

fn age(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
