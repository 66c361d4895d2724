//! Drives the real `gantry daemon` process: start it on temporary directories, speak raw
//! HTTP/1.1 to its socket, run the CLI against it, signal it.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const EXEC_GRANT: &str = "[plugins.exec]\nexec = [\"sh\", \"sleep\", \"cat\", \"env\", \"id\", \"setsid\", \"timeout\", \"touch\", \"rm\", \"mkdir\", \"date\", \"sha256sum\", \"ln\", \"mkfifo\"]\n";

/// A config directory with `gantry.toml` and `workflows/NAME.toml` files, and a state dir.
pub struct Site {
    pub tmp: tempfile::TempDir,
    pub config: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
}

impl Site {
    pub fn new(gantry_toml: &str, workflows: &[(&str, &str)]) -> Site {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = tmp.path().join("config");
        std::fs::create_dir_all(config.join("workflows")).expect("workflows dir");
        std::fs::create_dir_all(config.join("plugins")).expect("plugins dir");
        std::fs::write(config.join("gantry.toml"), gantry_toml).expect("gantry.toml");
        for (name, text) in workflows {
            std::fs::write(config.join(format!("workflows/{name}.toml")), text).expect("workflow");
        }
        let state = tmp.path().join("state");
        let socket = tmp.path().join("run/gantry.sock");
        Site {
            tmp,
            config,
            state,
            socket,
        }
    }

    /// Replaces a workflow file the way editors do: write a temporary file, rename it over.
    pub fn write_workflow(&self, name: &str, text: &str) {
        let tmp = self.config.join(format!("workflows/.{name}.toml.swp"));
        std::fs::write(&tmp, text).expect("write temp");
        std::fs::rename(&tmp, self.config.join(format!("workflows/{name}.toml"))).expect("rename");
    }

    pub fn start(&self) -> Daemon {
        self.start_with(&[])
    }

    pub fn start_with(&self, env: &[(&str, &str)]) -> Daemon {
        self.start_daemon(&[], env)
    }

    /// The daemon with its Kubernetes API simulator (`--sim`) in place of the clusters.
    pub fn start_sim(&self) -> Daemon {
        self.start_daemon(&["--sim"], &[])
    }

    fn start_daemon(&self, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let log = self.tmp.path().join("daemon.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("daemon log");
        let mut cmd = self.daemon_command(&[], &self.socket);
        cmd.args(args)
            .args(["--log-format", "json"])
            .env("GANTRY_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log fd"))
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn gantry daemon");
        let mut daemon = Daemon {
            child: Some(child),
            socket: self.socket.clone(),
            log,
        };
        daemon.wait_serving();
        daemon
    }

    /// Runs the CLI against this site's daemon; exit code and everything it printed.
    pub fn cli(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(args)
            .env("GANTRY_SOCKET", &self.socket)
            .env("GANTRY_CONFIG", &self.config)
            .env("GANTRY_STATE", &self.state)
            .output()
            .expect("run gantry");
        code_and_text(&out)
    }

    /// `gantry daemon` on this site's directories, serving `socket`, run through `wrapper`
    /// (a program and its arguments) when one is given.
    pub fn daemon_command(&self, wrapper: &[&str], socket: &Path) -> Command {
        let gantry = env!("CARGO_BIN_EXE_gantry");
        let mut cmd = Command::new(wrapper.first().copied().unwrap_or(gantry));
        if !wrapper.is_empty() {
            cmd.args(&wrapper[1..]).arg(gantry);
        }
        cmd.arg("daemon")
            .arg("--config")
            .arg(&self.config)
            .arg("--state")
            .arg(&self.state)
            .arg("--socket")
            .arg(socket);
        cmd
    }
}

pub struct Daemon {
    child: Option<Child>,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// A daemon started some other way (through a wrapper), killed when dropped like one
    /// `Site::start` started, so a failing test leaves no process behind.
    pub fn adopt(child: Child, socket: PathBuf, log: PathBuf) -> Daemon {
        Daemon {
            child: Some(child),
            socket,
            log,
        }
    }

    fn wait_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("daemon exited with {status}:\n{}", self.log_text());
            }
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not serve in time:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http(&self.socket, method, path, body)
    }

    pub fn json(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (status, text) = self.request(method, path, body);
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: {status} not JSON ({e}): {text}"));
        (status, value)
    }

    pub fn get(&self, path: &str) -> Value {
        let (status, v) = self.json("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    /// Triggers a run over raw HTTP; its id.
    pub fn trigger(&self, workflows: &[&str]) -> String {
        let body = serde_json::json!({ "workflows": workflows }).to_string();
        let (status, v) = self.json("POST", "/v1/runs", Some(&body));
        assert_eq!(status, 202, "{v}");
        v["id"].as_str().expect("run id").to_string()
    }

    /// Follows a run's event stream to its end.
    pub fn events(&self, run: &str, since: i64) -> Vec<Value> {
        let (status, text) =
            self.request("GET", &format!("/v1/runs/{run}/events?since={since}"), None);
        assert_eq!(status, 200, "{text}");
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Polls `GET path` until `done` holds for its JSON, or panics after `within`.
    pub fn poll(&self, path: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.get(path);
            if done(&v) {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "{path} never reached the expected state; last: {v}\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn run_state(&self, run: &str) -> String {
        self.get(&format!("/v1/runs/{run}"))["run"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn wait_run(&self, run: &str) -> Value {
        self.poll(&format!("/v1/runs/{run}"), Duration::from_secs(60), |v| {
            !matches!(v["run"]["state"].as_str(), Some("queued" | "running"))
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP/1.1 request on a Unix socket, read to the end (chunked bodies decoded).
pub fn http(socket: &Path, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut stream =
        UnixStream::connect(socket).unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send request");
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut chunked = false;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if line.eq_ignore_ascii_case("transfer-encoding: chunked") {
            chunked = true;
        }
    }
    let mut out = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).expect("chunk size");
            let n = usize::from_str_radix(size.trim(), 16).expect("chunk size hex");
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).expect("chunk");
            out.extend_from_slice(&chunk[..n]);
        }
    } else {
        reader.read_to_end(&mut out).expect("body");
    }
    (status, String::from_utf8_lossy(&out).into_owned())
}

/// A finished command's exit code and everything it printed, stdout first.
pub fn code_and_text(out: &std::process::Output) -> (i32, String) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}
