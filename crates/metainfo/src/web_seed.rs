//! Web seed URLs (BEP 19): where each file of a torrent lives on a plain HTTP server.
//!
//! A single-file torrent's URL names the file itself, unless it ends in `/`, in which case the
//! torrent's name is appended. A multi-file torrent's URL names a directory holding the
//! torrent's directory: the file `a/b` of torrent `t` is at `<url>/t/a/b`. Path components are
//! percent-encoded, so a name with spaces or `#` still addresses the right file.

use percent_encoding::utf8_percent_encode;

use crate::info::Info;
use crate::magnet::COMPONENT as UNRESERVED;

/// The URL of every entry of `info.files` (padding files included, so indexes match) on the
/// web seed `base`.
pub fn file_urls(base: &str, info: &Info) -> Vec<String> {
    let encode = |s: &str| utf8_percent_encode(s, UNRESERVED).to_string();
    if info.single_file {
        let url = match base.ends_with('/') {
            true => format!("{base}{}", encode(info.name.as_str())),
            false => base.to_owned(),
        };
        return vec![url; info.files.len()];
    }
    let dir = match base.ends_with('/') {
        true => format!("{base}{}/", encode(info.name.as_str())),
        false => format!("{base}/{}/", encode(info.name.as_str())),
    };
    info.files
        .iter()
        .map(|file| {
            let path: Vec<String> = file
                .path
                .components()
                .iter()
                .map(|c| encode(c.as_str()))
                .collect();
            format!("{dir}{}", path.join("/"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::create::{CreateOptions, InputFile, Plan};
    use crate::{PathComponent, TorrentPath};

    fn info(name: &str, paths: &[&str], single_file: bool) -> Info {
        let inputs = paths
            .iter()
            .map(|p| InputFile {
                path: TorrentPath::parse(p).unwrap_or_else(|e| panic!("{p}: {e}")),
                length: 10,
                executable: false,
            })
            .collect();
        let options = CreateOptions {
            version: crate::MetaVersion::V1,
            piece_length: Some(16 * 1024),
            ..CreateOptions::default()
        };
        let plan = Plan::new(
            PathComponent::new(name).unwrap_or_else(|e| panic!("{e}")),
            inputs,
            single_file,
            options,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let data = vec![0u8; 10 * paths.len()];
        let results: Vec<_> = plan
            .units()
            .iter()
            .enumerate()
            .map(|(i, unit)| {
                let len: u64 = unit.reads.iter().map(|r| r.len).sum();
                unit.hash(i, &data[..len as usize])
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        plan.finish(&results)
            .unwrap_or_else(|e| panic!("{e}"))
            .info()
            .clone()
    }

    #[test]
    fn single_file_url_names_the_file_or_a_directory() {
        let info = info("my file.iso", &["my file.iso"], true);
        assert_eq!(
            file_urls("http://h/x/image.iso", &info),
            ["http://h/x/image.iso"]
        );
        assert_eq!(
            file_urls("http://h/x/", &info),
            ["http://h/x/my%20file.iso"]
        );
    }

    #[test]
    fn multi_file_urls_append_name_and_encoded_path() {
        let info = info("t", &["a/b c", "d#e", "f~g_h-i.j"], false);
        let want = [
            "http://h/s/t/a/b%20c",
            "http://h/s/t/d%23e",
            "http://h/s/t/f~g_h-i.j",
        ];
        assert_eq!(file_urls("http://h/s", &info), want);
        assert_eq!(file_urls("http://h/s/", &info), want);
    }
}
