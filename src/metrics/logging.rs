//! [`init_tracing`]: the binary's one-time tracing subscriber setup.
//!
//! Library code never calls this (no global subscriber in the library); the
//! `clusterfunk` binary and examples call it once at start.

use std::fmt;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

use super::error::MetricsError;

/// Output format of log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl FromStr for LogFormat {
    type Err = MetricsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(MetricsError::UnknownLogFormat(s.to_owned())),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Builds the filter: `RUST_LOG` when set and non-empty, otherwise `filter`
/// (a `RUST_LOG`-style directive list such as `info,clusterfunk=debug`).
pub fn build_filter(filter: &str, rust_log: Option<&str>) -> Result<EnvFilter, MetricsError> {
    let directives = match rust_log {
        Some(env) if !env.trim().is_empty() => env,
        _ => filter,
    };
    EnvFilter::try_new(directives).map_err(|e| MetricsError::InvalidFilter {
        filter: directives.to_owned(),
        reason: e.to_string(),
    })
}

/// Installs the global tracing subscriber writing to stderr, filtered by
/// `RUST_LOG` if set, else by `filter`. Fails if `filter` does not parse or
/// a subscriber is already installed.
pub fn init_tracing(filter: &str, format: LogFormat) -> Result<(), MetricsError> {
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let env_filter = build_filter(filter, rust_log.as_deref())?;
    // Colour codes only for a person at a terminal: a file, a pipe or
    // `docker logs` gets plain text (and NO_COLOR turns colour off).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    result.map_err(|e| MetricsError::TracingInit(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_parses_and_prints() {
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("Text".parse::<LogFormat>().unwrap(), LogFormat::Text);
        assert!("yaml".parse::<LogFormat>().is_err());
        assert_eq!(LogFormat::Json.to_string(), "json");
    }

    #[test]
    fn env_wins_over_default_filter_and_bad_filters_fail() {
        let f = build_filter("info", Some("clusterfunk=trace")).unwrap();
        assert!(f.to_string().contains("clusterfunk=trace"));
        let f = build_filter("warn", Some("  ")).unwrap();
        assert_eq!(f.to_string(), "warn");
        let f = build_filter("debug", None).unwrap();
        assert_eq!(f.to_string(), "debug");
        assert!(matches!(
            build_filter("clusterfunk=notalevel", None),
            Err(MetricsError::InvalidFilter { .. })
        ));
    }
}
