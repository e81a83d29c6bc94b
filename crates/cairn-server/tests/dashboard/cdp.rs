//! Just enough of the Chrome DevTools Protocol to drive a headless
//! Chromium from a test, without a webdriver: start the browser, open a
//! page target, send commands over its WebSocket and wait for the answers.
//! Every wait is bounded; the browser is killed when [`Browser`] drops.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long one CDP command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// A running headless Chromium.
pub struct Browser {
    child: Child,
    /// `ws://127.0.0.1:<port>/devtools/browser/<id>`.
    ws_url: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium; panics (failing the test) if it is missing or does
    /// not announce its DevTools endpoint within 20 s.
    pub fn start() -> Self {
        assert!(
            std::path::Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: apt-get install -y chromium"
        );
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1200,900",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting chromium");
        let ws_url = devtools_url(&mut child);
        Self {
            child,
            ws_url,
            _profile: profile,
        }
    }

    /// Opens a new tab and connects to it.
    pub fn new_page(&self) -> Page {
        let mut browser = Page::connect(&self.ws_url);
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"}));
        let id = target["targetId"].as_str().expect("a target id");
        let host = self.ws_url.split("/devtools/").next().unwrap();
        Page::connect(&format!("{host}/devtools/page/{id}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads Chromium's stderr until `DevTools listening on ws://…`; keeps
/// draining it afterwards so the browser never blocks on a full pipe.
fn devtools_url(child: &mut Child) -> String {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("chromium did not print its DevTools URL within 20 s")
}

/// A WebSocket to one CDP target.
pub struct Page {
    socket: WebSocket<TcpStream>,
    next_id: u64,
}

impl Page {
    fn connect(url: &str) -> Self {
        let addr = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .expect("a ws:// URL");
        let stream = TcpStream::connect(addr).expect("connecting to DevTools");
        // The handshake gets the whole command timeout: a browser on a busy
        // machine may take seconds to answer it. Reads after it poll.
        stream.set_read_timeout(Some(COMMAND_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(COMMAND_TIMEOUT)).unwrap();
        let (socket, _) = tungstenite::client(url, stream).expect("DevTools handshake");
        socket
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        Self { socket, next_id: 1 }
    }

    /// Sends a command and returns its `result`; panics on a CDP error or
    /// if no answer comes within the command timeout.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"id": id, "method": method, "params": params});
        self.socket
            .send(Message::text(request.to_string()))
            .expect("sending a CDP command");
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        while Instant::now() < deadline {
            let Some(answer) = self.read() else { continue };
            if answer["id"] == json!(id) {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
        panic!("{method}: no answer within {COMMAND_TIMEOUT:?}");
    }

    /// The next message, or `None` if none came within the read timeout.
    fn read(&mut self) -> Option<Value> {
        match self.socket.read() {
            Ok(Message::Text(text)) => serde_json::from_str(text.as_str()).ok(),
            Ok(_) => None,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("DevTools connection: {e}"),
        }
    }

    /// Evaluates `expression` in the page and returns its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        result["result"]["value"].clone()
    }

    /// Polls `expression` (a string) until `want` holds, for up to 15 s;
    /// returns the last value, or panics with it.
    pub fn wait_for(
        &mut self,
        what: &str,
        expression: &str,
        want: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = String::new();
        while Instant::now() < deadline {
            last = self
                .eval(expression)
                .as_str()
                .unwrap_or_default()
                .to_string();
            if want(&last) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{what}: not within 15 s; the page shows:\n{last}");
    }
}
