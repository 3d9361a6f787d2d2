//! `hive console`: a fresh one-time login link to the running hive's web console, asked of the
//! core over its control socket (only the core knows the port it bound and holds the key the
//! link's digest is made with). Printed on stdout, in the two lines `hive up` prints.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use url::Url;

use crate::c0re::control::control_socket_path;
use crate::cli::HiveDirs;
use crate::config::{Config, is_loopback_url};

pub fn run(config_path: Option<PathBuf>, dirs: HiveDirs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config_path.as_deref())?;
    let path = control_socket_path(&dirs.data_dir);
    let mut s = std::os::unix::net::UnixStream::connect(&path).with_context(|| {
        format!(
            "no hive-c0re runs for {} (its control socket {} does not answer): start it with `hive up`",
            dirs.data_dir.display(),
            path.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"console-link\n")?;
    let mut line = String::new();
    std::io::BufReader::new(s)
        .read_line(&mut line)
        .context("hive-c0re did not answer on its control socket")?;
    let url = parse_answer(&line)?;
    println!(
        "{}",
        crate::c0re::web::link_lines(&url, cfg.web.link_ttl_secs, is_loopback_url(&url))
    );
    Ok(ExitCode::SUCCESS)
}

/// The core's answer to `console-link`: `ok <url>`, or `error: <why>`.
fn parse_answer(line: &str) -> anyhow::Result<Url> {
    let line = line.trim();
    if let Some(url) = line.strip_prefix("ok ") {
        return Url::parse(url).context("hive-c0re answered a link that is not a URL");
    }
    match line.strip_prefix("error: ") {
        Some(why) => anyhow::bail!("hive-c0re cannot make a login link: {why}"),
        None if line.is_empty() => {
            anyhow::bail!("hive-c0re closed its control socket without an answer")
        }
        None => anyhow::bail!(
            "hive-c0re does not know `console-link` (a core older than this `hive`?): it answered {line:?}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        struct Case {
            name: &'static str,
            line: &'static str,
            /// The link, or a word of the error.
            want: Result<&'static str, &'static str>,
        }
        let cases = [
            Case {
                name: "a link",
                line: "ok http://127.0.0.1:8787/login?token=abc\n",
                want: Ok("http://127.0.0.1:8787/login?token=abc"),
            },
            Case {
                name: "not served",
                line: "error: the web console is not served\n",
                want: Err("not served"),
            },
            Case {
                name: "an older core",
                line: "error: unknown request\n",
                want: Err("unknown request"),
            },
            Case {
                name: "nothing",
                line: "",
                want: Err("without an answer"),
            },
            Case {
                name: "garbage",
                line: "ok not a url",
                want: Err("not a URL"),
            },
        ];
        for c in cases {
            match (parse_answer(c.line), c.want) {
                (Ok(u), Ok(w)) => assert_eq!(u.as_str(), w, "{}", c.name),
                (Err(e), Err(w)) => {
                    let e = format!("{e:#}");
                    assert!(e.contains(w), "{}: {e}", c.name);
                }
                (got, want) => panic!("{}: got {got:?}, wanted {want:?}", c.name),
            }
        }
    }
}
