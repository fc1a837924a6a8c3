//! A real HTTP/1.1 server on 127.0.0.1 in a thread of the test process, answering
//! each connection with the next scripted [`Reply`] (the last one repeats) and
//! recording what each request sent. Hand-written on `std::net`: no network, no
//! server crate.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What one connection is answered.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A status line, extra headers and a body (with its Content-Length).
    Http {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// 200 with a body echoing the request's head (its headers) and `prefix`.
    Echo { status: u16, prefix: String },
    /// A 200 chat-completions answer (see [`completion`]) whose content is `content`
    /// with each `{head}` replaced by the request's head and each `{authorization}`
    /// by its `Authorization` header's value: an endpoint that puts what it was
    /// sent, the key among it, into the model's answer.
    EchoCompletion {
        content: String,
        prompt_tokens: u64,
        completion_tokens: u64,
    },
    /// Wait, then close without a word.
    Sleep(Duration),
    /// Wait, then answer the inner reply (a slow server that does answer).
    Late(Duration, Box<Reply>),
    /// 200 and `len` bytes of body, written 64 KiB at a time until the client hangs
    /// up; with or without a Content-Length saying so.
    Huge { len: usize, content_length: bool },
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request line and headers, as sent.
    pub head: String,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the request body is JSON")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

pub struct Server {
    /// `http://127.0.0.1:PORT/v1`, a base URL.
    pub base_url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl Server {
    pub fn start(replies: Vec<Reply>) -> Server {
        assert!(!replies.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let rec = received.clone();
        std::thread::spawn(move || {
            for (i, conn) in listener.incoming().enumerate() {
                let Ok(conn) = conn else { continue };
                let reply = replies[i.min(replies.len() - 1)].clone();
                let rec = rec.clone();
                // Each connection in its own thread: a sleeping reply must not hold
                // up the next connection.
                std::thread::spawn(move || serve(conn, &reply, &rec));
            }
        });
        Server {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            received,
        }
    }

    /// A URL on this server: `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        let origin = self.base_url.trim_end_matches("/v1");
        format!("{origin}{path}")
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// A 200 chat-completions answer with `content` and the token counts.
pub fn completion(content: &str, prompt_tokens: u64, completion_tokens: u64) -> Reply {
    http(
        200,
        &[],
        &completion_body(content, prompt_tokens, completion_tokens),
    )
}

/// The body of a chat-completions answer with `content` and the token counts.
pub fn completion_body(content: &str, prompt_tokens: u64, completion_tokens: u64) -> Vec<u8> {
    serde_json::json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "test-model",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content },
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    })
    .to_string()
    .into_bytes()
}

pub fn http(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    Reply::Http {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.to_vec(),
    }
}

fn serve(conn: TcpStream, reply: &Reply, rec: &Mutex<Vec<Received>>) {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let received = Received { head, body };
    rec.lock().unwrap().push(received.clone());
    // Errors writing mean the client hung up, which some tests expect.
    let _ = answer(conn, reply, &received);
}

fn answer(mut out: TcpStream, reply: &Reply, received: &Received) -> std::io::Result<()> {
    match reply {
        Reply::Http {
            status,
            headers,
            body,
        } => write_reply(&mut out, *status, headers, body),
        Reply::Echo { status, prefix } => {
            let body = format!("{prefix}{}", received.head);
            write_reply(&mut out, *status, &[], body.as_bytes())
        }
        Reply::EchoCompletion {
            content,
            prompt_tokens,
            completion_tokens,
        } => {
            let content = content.replace("{head}", &received.head).replace(
                "{authorization}",
                &received.header("authorization").unwrap_or_default(),
            );
            let body = completion_body(&content, *prompt_tokens, *completion_tokens);
            write_reply(&mut out, 200, &[], &body)
        }
        Reply::Sleep(d) => {
            std::thread::sleep(*d);
            Ok(())
        }
        Reply::Late(d, inner) => {
            std::thread::sleep(*d);
            answer(out, inner, received)
        }
        Reply::Huge {
            len,
            content_length,
        } => write_huge(&mut out, *len, *content_length),
    }
}

fn write_reply(
    out: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} Scripted\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    out.flush()
}

fn write_huge(out: &mut TcpStream, len: usize, content_length: bool) -> std::io::Result<()> {
    let mut head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n".to_string();
    if content_length {
        head.push_str(&format!("Content-Length: {len}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    let chunk = vec![b'x'; 64 << 10];
    let mut sent = 0;
    while sent < len {
        let n = chunk.len().min(len - sent);
        out.write_all(&chunk[..n])?;
        sent += n;
    }
    Ok(())
}
