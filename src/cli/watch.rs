//! `clusterfunk watch`: the event stream, printed line by line as JSON or
//! text. A child module of `mgmt`.

use clusterfunk::management::{Event, EventKind, EventStream};

use super::{dash, Format};

/// Prints every event of `events` as it comes.
pub(super) async fn print_events(mut events: EventStream, format: Format) -> anyhow::Result<()> {
    use std::io::Write;
    while let Some(ev) = events.next().await {
        let ev = ev?;
        let line = match format {
            Format::Json => serde_json::to_string(&ev)?,
            Format::Text => event_text(&ev),
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(())
}

/// `HH:MM:SS.mmm` (UTC) of a Unix time in milliseconds.
fn clock(unix_ms: u64) -> String {
    let ms = unix_ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

fn event_text(e: &Event) -> String {
    let what = match e.kind {
        EventKind::StateChanged | EventKind::RoleChanged => e.detail.clone(),
        EventKind::LeaderChanged => dash(&e.node_id),
        EventKind::MapProposed => format!("epoch {}", e.epoch),
        EventKind::MapCommitted => format!("epoch {}, {} shards moved", e.epoch, e.moved),
        EventKind::UserEvent => format!(
            "{} {}",
            e.detail,
            String::from_utf8_lossy(&e.payload).replace(['\n', '\r'], " ")
        ),
        EventKind::Gap => format!("{} events skipped (reader too slow)", e.missed),
        _ => e.node_id.clone(),
    };
    format!(
        "{} {} {:<15} {}",
        clock(e.unix_ms),
        e.source,
        e.kind_name,
        what.trim_end()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_utc_time_of_day() {
        assert_eq!(clock(86_400_000 + 3_723_004), "01:02:03.004");
    }
}
