// SPDX-License-Identifier: GPL-2.0

//! debugfs's `dma_buf/bufinfo`, as `dma_buf_debug_show()` writes it: a
//! header, then for each dma-buf a line of tab-separated columns (size,
//! flags, mode, count, exp_name, ino, name), its reservation object's
//! fences, its attachments under `Attached Devices:` and a `Total N devices
//! attached` line.

/// One dma-buf as `bufinfo` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Object {
    /// Size in bytes.
    pub(crate) size: u64,
    /// The file's references (`file_count()`).
    pub(crate) count: u64,
    /// The exporter's name (`dma_buf_export_info.exp_name`).
    pub(crate) exp_name: String,
    /// Inode number of the dma-buf's file, as fstat(2) gives it.
    pub(crate) ino: u64,
    /// The buffer's name, `<none>` if it has none.
    pub(crate) name: String,
    /// One line per attachment: the importer device's name, or
    /// `(no device)` for an attachment without one.
    pub(crate) attachments: Vec<String>,
}

/// The heading of an object's attachments.
const ATTACHED: &str = "\tAttached Devices:";

/// Every dma-buf the text lists, in its order.
pub(crate) fn parse(text: &str) -> Vec<Object> {
    let mut objects: Vec<Object> = Vec::new();
    let mut in_attachments = false;
    for line in text.lines() {
        if let Some(object) = parse_object(line) {
            objects.push(object);
            in_attachments = false;
            continue;
        }
        let Some(object) = objects.last_mut() else {
            continue;
        };
        if line == ATTACHED {
            in_attachments = true;
        } else if !line.starts_with('\t') {
            // "Total N devices attached", a blank line, the totals.
            in_attachments = false;
        } else if in_attachments {
            object.attachments.push(line[1..].to_owned());
        }
    }
    objects
}

/// An object's line: `%08zu\t%08x\t%08x\t%08ld\t%s\t%08llu\t%s`.
fn parse_object(line: &str) -> Option<Object> {
    if line.starts_with('\t') {
        return None;
    }
    let fields: Vec<&str> = line.splitn(7, '\t').collect();
    let [size, flags, mode, count, exp_name, ino, name] = fields[..] else {
        return None;
    };
    u32::from_str_radix(flags, 16).ok()?;
    u32::from_str_radix(mode, 16).ok()?;
    Some(Object {
        size: size.parse().ok()?,
        count: count.parse().ok()?,
        exp_name: exp_name.to_owned(),
        ino: ino.parse().ok()?,
        name: name.to_owned(),
        attachments: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the kernel writes it: one buffer with a fence and an attachment
    /// without a device, one with a device and one with no attachment.
    const BUFINFO: &str = "
Dma-buf Objects:
size    \tflags   \tmode    \tcount   \texp_name\tino     \tname
00016384\t00080002\t0008001f\t00000003\tvfio_dmabuf\t00000042\t<none>
\tkernel fence:1:2 signalled
\tAttached Devices:
\t(no device)
Total 1 devices attached

00004096\t00000002\t0000001f\t00000001\tsystem\t00000007\tsome name\twith a tab
\tAttached Devices:
\t0000:00:02.0
\t(no device)
Total 2 devices attached

01048576\t00080002\t0008001f\t00000001\tvfio_dmabuf\t00000043\t<none>
\tAttached Devices:
Total 0 devices attached


Total 3 objects, 1069056 bytes
";

    #[test]
    fn objects_and_attachments() {
        let objects = parse(BUFINFO);
        assert_eq!(objects.len(), 3);
        assert_eq!(
            objects[0],
            Object {
                size: 16384,
                count: 3,
                exp_name: "vfio_dmabuf".to_owned(),
                ino: 42,
                name: "<none>".to_owned(),
                attachments: vec!["(no device)".to_owned()],
            }
        );
        assert_eq!(objects[1].name, "some name\twith a tab");
        assert_eq!(objects[1].attachments, ["0000:00:02.0", "(no device)"]);
        assert_eq!(objects[2].ino, 43);
        assert!(objects[2].attachments.is_empty());
    }

    #[test]
    fn nothing_listed() {
        let empty = "\nDma-buf Objects:\nsize    \tflags   \tmode    \tcount   \texp_name\tino     \tname\n\nTotal 0 objects, 0 bytes\n";
        assert!(parse(empty).is_empty());
        assert!(parse("").is_empty());
    }
}
