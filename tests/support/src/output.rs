//! The one output capture for tests that run a real binary.

use std::process::Child;

/// Collects a child's stdout and stderr as they come (a full pipe would stall its logging).
pub struct Output {
    text: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Output {
    pub fn capture(child: &mut Child) -> Self {
        use std::io::Read;
        let text = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sources: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout piped")),
            Box::new(child.stderr.take().expect("stderr piped")),
        ];
        let readers = sources
            .into_iter()
            .map(|mut from| {
                let into = text.clone();
                std::thread::spawn(move || {
                    let mut chunk = [0u8; 8192];
                    while let Ok(n) = from.read(&mut chunk) {
                        if n == 0 {
                            break;
                        }
                        into.lock().unwrap().extend_from_slice(&chunk[..n]);
                    }
                })
            })
            .collect();
        Self { text, readers }
    }

    pub fn so_far(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap()).into_owned()
    }

    /// Everything, once the child has exited.
    pub fn finish(self) -> String {
        for reader in self.readers {
            reader.join().unwrap();
        }
        String::from_utf8_lossy(&self.text.lock().unwrap()).into_owned()
    }
}
