//! What another process (the control plane under test) has used, from `/proc`: CPU seconds
//! (user + system, all threads) and resident memory, so its cost is measured apart from the
//! generator's. Also how busy the whole machine was, from `/proc/stat`.

use anyhow::Context;
use serde::Serialize;

/// One reading of a process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ProcessSample {
    /// User plus system CPU seconds used so far, every thread counted.
    pub cpu_seconds: f64,
    /// Resident memory now, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// The most resident memory so far, KiB (`VmHWM`).
    pub hwm_kib: u64,
}

/// Reads process `pid`.
///
/// # Errors
/// When `/proc/<pid>` cannot be read or parsed (the process is gone).
pub fn sample(pid: u32) -> anyhow::Result<ProcessSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces and parentheses: count fields after its end.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("/proc/<pid>/stat has no command name")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `fields[0]` is field 3 (state).
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("/proc/{pid}/stat field {}", i + 3))
    };
    let cpu_ticks = ticks(11)? + ticks(12)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcessSample {
        cpu_seconds: cpu_ticks as f64 / rustix::param::clock_ticks_per_second() as f64,
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
    })
}

/// The machine's CPU counters: (all time, idle time), in ticks over every core.
///
/// # Errors
/// When `/proc/stat` cannot be read.
pub fn machine() -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Ok((fields.iter().sum(), idle))
}

/// The fraction of the machine's core time not idle between two [`machine`] readings.
pub fn busy(before: (u64, u64), after: (u64, u64)) -> f64 {
    let total = after.0.saturating_sub(before.0);
    let idle = after.1.saturating_sub(before.1);
    if total == 0 {
        0.0
    } else {
        1.0 - idle as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a panic is the failure report"
    )]

    use super::*;

    #[test]
    fn this_process_reads_back() {
        let me = sample(std::process::id()).unwrap();
        assert!(me.rss_kib > 0 && me.hwm_kib >= me.rss_kib, "{me:?}");
        let before = machine().unwrap();
        assert!((0.0..=1.0).contains(&busy(before, machine().unwrap())));
    }
}
