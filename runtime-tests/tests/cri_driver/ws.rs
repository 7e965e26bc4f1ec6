//! A minimal websocket (RFC 6455) client for the CRI streaming server's remotecommand
//! protocol `v4.channel.k8s.io`: every binary message starts with a channel byte (0 stdin,
//! 1 stdout, 2 stderr, 3 error/status, 4 terminal resize); the server ends a session with a
//! JSON `Status` on channel 3 and a close frame. Only what the tests need: plain `http://` on
//! loopback, unfragmented client frames, no extensions.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub const PROTOCOL: &str = "v4.channel.k8s.io";

/// What one streaming session delivered.
#[derive(Debug, Default)]
pub struct Session {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Channel 3: the v4 status document (`{"metadata":{},"status":"Success"}` or a Failure
    /// with the exit code as an `ExitCode` cause).
    pub status: String,
    /// The server sent a close frame (rather than the connection just ending).
    pub closed_cleanly: bool,
}

impl Session {
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The process's exit code from the status: 0 for Success, the `ExitCode` cause otherwise.
    pub fn exit_code(&self) -> Option<i32> {
        let v: serde_json::Value = serde_json::from_str(&self.status).ok()?;
        match v["status"].as_str()? {
            "Success" => Some(0),
            _ => v["details"]["causes"]
                .as_array()?
                .iter()
                .find(|c| c["reason"] == "ExitCode")?["message"]
                .as_str()?
                .parse()
                .ok(),
        }
    }
}

pub struct Conn {
    stream: BufReader<TcpStream>,
    pub protocol: String,
    mask_seed: u32,
}

impl Conn {
    /// Opens `url` (`http://HOST:PORT/PATH` from an Exec or Attach response) and upgrades it.
    pub fn open(url: &str, timeout: Duration) -> Result<Conn, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("streaming URL {url:?} is not http://"))?;
        let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let stream =
            TcpStream::connect(hostport).map_err(|e| format!("connect {hostport}: {e}"))?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|_| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| e.to_string())?;
        // Any 16 bytes base64-encoded make a valid key.
        let key = "a2FrdXJpLWNyaS10ZXN0IQ==";
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: {PROTOCOL}\r\nOrigin: http://{hostport}\r\n\r\n"
        );
        let mut stream = BufReader::new(stream);
        stream
            .get_mut()
            .write_all(request.as_bytes())
            .map_err(|e| format!("send upgrade request: {e}"))?;
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            let n = stream
                .read_line(&mut line)
                .map_err(|e| format!("read upgrade response: {e}"))?;
            if n == 0 || line == "\r\n" {
                break;
            }
            head.push(line.trim_end().to_string());
        }
        let status = head.first().cloned().unwrap_or_default();
        if !status.starts_with("HTTP/1.1 101") {
            return Err(format!("websocket upgrade refused: {head:?}"));
        }
        let protocol = head
            .iter()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("Sec-WebSocket-Protocol")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        Ok(Conn {
            stream,
            protocol,
            mask_seed: 0x6b61_6b75,
        })
    }

    /// Sends `data` on `channel` (0 = stdin, 4 = resize) as one masked binary frame.
    pub fn send(&mut self, channel: u8, data: &[u8]) -> Result<(), String> {
        let mut payload = Vec::with_capacity(data.len() + 1);
        payload.push(channel);
        payload.extend_from_slice(data);
        self.send_frame(0x2, &payload)
    }

    fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<(), String> {
        let mut frame = vec![0x80 | opcode];
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if len <= 0xffff {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        self.mask_seed = self
            .mask_seed
            .wrapping_mul(1_103_515_245)
            .wrapping_add(12345);
        let mask = self.mask_seed.to_be_bytes();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream
            .get_mut()
            .write_all(&frame)
            .map_err(|e| format!("websocket send: {e}"))
    }

    /// Sends a close frame (what a client does when its user is done with the session).
    pub fn close(&mut self) -> Result<(), String> {
        self.send_frame(0x8, &1000u16.to_be_bytes())
    }

    /// One message: (opcode, payload). Pings are answered; continuation frames are joined.
    fn recv(&mut self) -> Result<Option<(u8, Vec<u8>)>, String> {
        let mut message: Option<(u8, Vec<u8>)> = None;
        loop {
            let mut hdr = [0u8; 2];
            match self.stream.read_exact(&mut hdr) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(format!("websocket read: {e}")),
            }
            let fin = hdr[0] & 0x80 != 0;
            let opcode = hdr[0] & 0x0f;
            let masked = hdr[1] & 0x80 != 0;
            let mut len = u64::from(hdr[1] & 0x7f);
            if len == 126 {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).map_err(|e| e.to_string())?;
                len = u64::from(u16::from_be_bytes(b));
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).map_err(|e| e.to_string())?;
                len = u64::from_be_bytes(b);
            }
            let mut mask = [0u8; 4];
            if masked {
                self.stream
                    .read_exact(&mut mask)
                    .map_err(|e| e.to_string())?;
            }
            if len > 64 << 20 {
                return Err(format!("websocket frame of {len} bytes"));
            }
            let mut payload = vec![0u8; len as usize];
            self.stream
                .read_exact(&mut payload)
                .map_err(|e| format!("websocket read payload: {e}"))?;
            if masked {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            match opcode {
                0x9 => {
                    self.send_frame(0xA, &payload)?;
                    continue;
                }
                0xA => continue,
                0x0 => match message.as_mut() {
                    Some((_, data)) => data.extend_from_slice(&payload),
                    None => return Err("websocket continuation without a message".into()),
                },
                _ => message = Some((opcode, payload)),
            }
            if fin {
                return Ok(message);
            }
        }
    }

    /// Reads until the server closes the session (or `deadline`), collecting the channels.
    /// `on_output` sees stdout and stderr as they come and may send (e.g. stdin after a
    /// prompt); it returns true once it wants the client to close the session itself.
    pub fn run(
        mut self,
        deadline: Instant,
        mut on_output: impl FnMut(&mut Conn, &Session) -> Result<bool, String>,
    ) -> Result<Session, String> {
        let mut s = Session::default();
        while Instant::now() < deadline {
            let Some((opcode, payload)) = self.recv()? else {
                return Ok(s);
            };
            match opcode {
                0x8 => {
                    s.closed_cleanly = true;
                    let _ = self.close();
                    return Ok(s);
                }
                0x2 => {
                    let Some((&channel, data)) = payload.split_first() else {
                        continue;
                    };
                    match channel {
                        1 => s.stdout.extend_from_slice(data),
                        2 => s.stderr.extend_from_slice(data),
                        3 => s.status.push_str(&String::from_utf8_lossy(data)),
                        _ => {}
                    }
                    if on_output(&mut self, &s)? {
                        self.close()?;
                    }
                }
                other => return Err(format!("unexpected websocket opcode {other:#x}")),
            }
        }
        Err(format!(
            "streaming session still open at the deadline; so far: {s:?}"
        ))
    }
}
