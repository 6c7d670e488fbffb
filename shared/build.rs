//! Writes the AWS clients' built-in trust store (see `src/aws.rs`): the
//! Amazon Trust Services roots of the Mozilla set, as PEM, selected here at
//! build time so that a cold start neither searches the set nor encodes it.

use std::io::Write;

use base64::Engine;

/// The common names of the Amazon Trust Services roots: Amazon Root CA 1-4
/// and the Starfield Services root that cross-signs them for older clients.
const NAMES: [&str; 5] = [
    "Amazon Root CA 1",
    "Amazon Root CA 2",
    "Amazon Root CA 3",
    "Amazon Root CA 4",
    "Starfield Services Root Certificate Authority - G2",
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let mut pem = Vec::new();
    for name in NAMES {
        // The name sits in the subject (and, self-signed, the issuer) of
        // exactly one certificate of the set; anything else stops the build.
        let matches: Vec<_> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .filter(|c| c.as_ref().windows(name.len()).any(|w| w == name.as_bytes()))
            .collect();
        let [cert] = matches.as_slice() else {
            panic!(
                "{name}: {} certificates in webpki-root-certs, expected 1",
                matches.len()
            );
        };
        let body = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        writeln!(pem, "# {name}").unwrap();
        writeln!(pem, "-----BEGIN CERTIFICATE-----").unwrap();
        for line in body.as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        writeln!(pem, "-----END CERTIFICATE-----").unwrap();
    }
    let out = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("aws-roots.pem");
    std::fs::write(out, pem).unwrap();
}
