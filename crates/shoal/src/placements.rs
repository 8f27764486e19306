//! The placement commands (`distribute`, `placements`, `placement show|watch|rm`): gRPC calls to
//! the control plane's `PlacementService`, printed as text or as the API's proto3 JSON.

use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shoal_api::v1::placement_service_client::PlacementServiceClient;
use shoal_api::{ApiError, ErrorCode, v1};

use crate::cli::{
    ClientArgs, DistributeArgs, PlacementArgs, PlacementCommand, PlacementNameArgs, PlacementsArgs,
};
use crate::client::{CallFailed, PAGE_SIZE, Transport, control_plane, every_page, failed, runtime};
use crate::output::{json_value, line, status};
use crate::units::{format_size, parse_duration};

const WHAT: &str = "control plane";

fn client(server: &str, client: &ClientArgs) -> anyhow::Result<PlacementServiceClient<Transport>> {
    Ok(PlacementServiceClient::new(control_plane(server, client)?))
}

/// `--until`: a duration from now, or a UTC time `YYYY-MM-DDTHH:MM:SSZ`.
fn until(text: &str, now: SystemTime) -> Result<shoal_api::wkt::Timestamp, ApiError> {
    let invalid = |m: String| ApiError::new(ErrorCode::InvalidArgument, m);
    let at = match parse_duration(text) {
        Ok(d) => now + d,
        Err(_) => UNIX_EPOCH + Duration::from_secs(utc_seconds(text).ok_or_else(|| {
            invalid(format!(
                "--until {text:?} is neither a duration (8h, 7d) nor a UTC time like 2026-12-01T18:00:00Z"
            ))
        })?),
    };
    Ok(timestamp(at))
}

/// `at` as the API's timestamp, to the second.
fn timestamp(at: SystemTime) -> shoal_api::wkt::Timestamp {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    shoal_api::wkt::Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

/// Seconds since 1970 of `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
fn utc_seconds(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<u64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || d == 0
        || hh > 23
        || mm > 59
        || ss > 59
    {
        return None;
    }
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if d > month_days[(m - 1) as usize] {
        return None;
    }
    // Days from 1970-01-01 to the date (Howard Hinnant's days_from_civil).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// `shoal distribute`
pub fn distribute(args: DistributeArgs) -> anyhow::Result<()> {
    let now = SystemTime::now();
    let until = match (args.until.as_deref(), args.retain) {
        (Some(text), _) => Some(until(text, now).map_err(CallFailed)?),
        (None, Some(retain)) => Some(timestamp(now.checked_add(retain).ok_or_else(|| {
            CallFailed(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("--retain {} s is too far in the future", retain.as_secs()),
            ))
        })?)),
        (None, None) => None,
    };
    let request = v1::CreatePlacementRequest {
        name: args.name.unwrap_or_default(),
        r#ref: args.reference,
        selector: args.to,
        until,
    };
    let server = args.server.url;
    let placement = runtime()?.block_on(async {
        client(&server, &args.client)?
            .create_placement(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| failed(&s, &server, WHAT))
    })?;
    if args.client.json && !args.watch {
        return json_value(&placement);
    }
    let totals = placement.totals.unwrap_or_default();
    status(&format!(
        "placement {}: {} to `{}` — {} node{} match now; nodes that join and match get it too",
        placement.name,
        if placement.name_tag.is_empty() {
            &placement.content_id
        } else {
            &placement.name_tag
        },
        placement.selector,
        totals.nodes,
        if totals.nodes == 1 { "" } else { "s" },
    ));
    if args.watch {
        return watch(&server, &placement.name, &args.client);
    }
    line(&placement.name);
    Ok(())
}

/// `shoal placements`
pub fn list(args: PlacementsArgs) -> anyhow::Result<()> {
    let server = args.server.url;
    let placements = runtime()?.block_on(async {
        let client = client(&server, &args.client)?;
        every_page(|page_token| {
            let mut client = client.clone();
            let request = v1::ListPlacementsRequest {
                page_size: PAGE_SIZE,
                page_token,
            };
            async move {
                let page = client.list_placements(request).await?.into_inner();
                Ok((page.placements, page.next_page_token))
            }
        })
        .await
        .map_err(|s| failed(&s, &server, WHAT))
    })?;
    if args.client.json {
        return json_value(&v1::ListPlacementsResponse {
            placements,
            next_page_token: String::new(),
        });
    }
    for p in placements {
        let t = p.totals.unwrap_or_default();
        line(&format!(
            "{:<28} {:<28} {:<24} {:>5}/{:<5} done {}",
            p.name,
            if p.name_tag.is_empty() {
                &p.content_id[..16]
            } else {
                &p.name_tag
            },
            p.selector,
            t.done,
            t.nodes,
            if t.failed > 0 {
                format!("({} failed)", t.failed)
            } else {
                String::new()
            },
        ));
    }
    Ok(())
}

/// `shoal placement ...`
pub fn placement(args: PlacementArgs) -> anyhow::Result<()> {
    match args.command {
        PlacementCommand::Show(name) => show(&args.server.url, name),
        PlacementCommand::Watch(name) => watch(&args.server.url, &name.name, &name.client),
        PlacementCommand::Rm(name) => rm(&args.server.url, name),
    }
}

fn state_name(state: i32) -> &'static str {
    match v1::AssignmentState::try_from(state) {
        Ok(v1::AssignmentState::Pending) => "pending",
        Ok(v1::AssignmentState::Downloading) => "downloading",
        Ok(v1::AssignmentState::Done) => "done",
        Ok(v1::AssignmentState::Failed) => "failed",
        _ => "unknown",
    }
}

fn show(server: &str, args: PlacementNameArgs) -> anyhow::Result<()> {
    let pages = runtime()?.block_on(async {
        let client = client(server, &args.client)?;
        every_page(|page_token| {
            let mut client = client.clone();
            let request = v1::GetPlacementRequest {
                name: args.name.clone(),
                page_size: PAGE_SIZE,
                page_token,
            };
            async move {
                let page = client.get_placement(request).await?.into_inner();
                let next = page.next_page_token.clone();
                Ok((vec![page], next))
            }
        })
        .await
        .map_err(|s| failed(&s, server, WHAT))
    })?;
    let placement = pages
        .first()
        .and_then(|p| p.placement.clone())
        .unwrap_or_default();
    let nodes: Vec<v1::PlacementNode> = pages.into_iter().flat_map(|p| p.nodes).collect();
    if args.client.json {
        return json_value(&v1::PlacementStatus {
            placement: Some(placement),
            nodes,
            next_page_token: String::new(),
        });
    }
    let t = placement.totals.unwrap_or_default();
    line(&format!(
        "placement {}: {} ({}) to `{}`, by {}",
        placement.name,
        if placement.name_tag.is_empty() {
            "by content id"
        } else {
            &placement.name_tag
        },
        format_size(placement.size),
        placement.selector,
        placement.created_by,
    ));
    line(&format!(
        "nodes: {} — {} done, {} downloading, {} pending, {} failed; {} of {}",
        t.nodes,
        t.done,
        t.downloading,
        t.pending,
        t.failed,
        format_size(t.bytes_done),
        format_size(t.bytes_total)
    ));
    for n in nodes {
        let percent = if placement.size == 0 {
            100.0
        } else {
            n.bytes_done as f64 * 100.0 / placement.size as f64
        };
        let detail = match v1::AssignmentState::try_from(n.state) {
            Ok(v1::AssignmentState::Downloading) if n.reason.is_empty() => {
                format!("{percent:.0}%")
            }
            Ok(v1::AssignmentState::Downloading) => format!("{percent:.0}%, {}", n.reason),
            Ok(v1::AssignmentState::Failed) => n.reason.clone(),
            _ => String::new(),
        };
        line(&format!(
            "  {:<28} {:<12} {}",
            n.node_id,
            state_name(n.state),
            detail
        ));
    }
    Ok(())
}

fn watch(server: &str, name: &str, client_args: &ClientArgs) -> anyhow::Result<()> {
    let json = client_args.json;
    let bar = ProgressBar::with_draw_target(
        Some(0),
        if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let mut last_line = Instant::now() - Duration::from_secs(60);
    let final_status = runtime()?.block_on(async {
        let mut client = client(server, client_args)?;
        loop {
            let request = v1::GetPlacementRequest {
                name: name.to_owned(),
                page_size: 1,
                page_token: String::new(),
            };
            let reply = client
                .get_placement(request)
                .await
                .map_err(|s| failed(&s, server, WHAT))?
                .into_inner();
            let placement = reply.placement.clone().unwrap_or_default();
            let t = placement.totals.unwrap_or_default();
            bar.set_length(t.bytes_total);
            bar.set_position(t.bytes_done);
            bar.set_message(format!("{}/{} nodes done", t.done, t.nodes));
            // Without a terminal, a line every 10 s says the same.
            if bar.is_hidden() && !json && last_line.elapsed() >= Duration::from_secs(10) {
                status(&format!(
                    "{}: {}/{} nodes done, {} downloading, {} failed, {} of {}",
                    placement.name,
                    t.done,
                    t.nodes,
                    t.downloading,
                    t.failed,
                    format_size(t.bytes_done),
                    format_size(t.bytes_total)
                ));
                last_line = Instant::now();
            }
            if t.nodes > 0 && t.done == t.nodes {
                return anyhow::Ok(reply);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })?;
    bar.finish_and_clear();
    if json {
        return json_value(&final_status);
    }
    let t = final_status
        .placement
        .and_then(|p| p.totals)
        .unwrap_or_default();
    line(&format!(
        "{name}: all {} nodes done ({}) in {:.1} s",
        t.nodes,
        format_size(t.bytes_done),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn rm(server: &str, args: PlacementNameArgs) -> anyhow::Result<()> {
    let reply = runtime()?.block_on(async {
        client(server, &args.client)?
            .delete_placement(v1::DeletePlacementRequest {
                name: args.name.clone(),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| failed(&s, server, WHAT))
    })?;
    if args.client.json {
        return json_value(&reply);
    }
    status(&format!(
        "placement {} removed; nodes keep what they have",
        args.name
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_parse_exactly() {
        assert_eq!(utc_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(utc_seconds("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(utc_seconds("2026-12-01T18:00:00Z"), Some(1_796_148_000));
        for bad in [
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-12-01 18:00:00Z",
            "2026-12-01T24:00:00Z",
            "x",
        ] {
            assert_eq!(utc_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn until_takes_a_duration_or_a_time() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(until("2h", now).map(|t| t.seconds), Ok(1000 + 7200));
        assert_eq!(
            until("1970-01-01T00:01:00Z", now).map(|t| t.seconds),
            Ok(60)
        );
        let e = until("tomorrow", now).map(|t| t.seconds).unwrap_err();
        assert!(e.message.contains("2026-12-01T18:00:00Z"), "{}", e.message);
    }
}
