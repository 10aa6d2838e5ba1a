//! Logging: JSON lines in production, readable lines locally; the request id on every line
//! through the request span.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogFormat, Mode};

/// Installs the global subscriber writing to `writer`. Returns false if one was already set.
pub fn init<W>(mode: Mode, format: LogFormat, filter: &str, ansi: bool, writer: W) -> bool
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => mode == Mode::Production,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi && !json)
        .with_writer(writer);
    if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
            .is_ok()
    } else {
        builder.compact().try_init().is_ok()
    }
}

/// An error with all its causes on one line (`outer: cause: root cause`), for a log field: the
/// `#[source]` chain is what says why, and a bare `Display` shows only the outermost layer.
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
