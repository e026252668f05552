//! The Blob service's XML answers read into plain values: blob listings, block lists and
//! error codes. Pure functions over the response text.

use std::time::SystemTime;

/// An element with its text and children; attributes are not needed.
#[derive(Debug, Default)]
struct Element {
    name: String,
    text: String,
    children: Vec<Element>,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }
}

/// Why an answer could not be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed XML from the blob service: {0}")]
pub(super) struct XmlError(String);

/// Replaces XML's predefined and numeric entities.
fn unescape(text: &str) -> Result<String, XmlError> {
    if !text.contains('&') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let end = rest[at..]
            .find(';')
            .ok_or_else(|| XmlError(format!("unterminated entity in {text:?}")))?;
        let entity = &rest[at + 1..at + end];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| XmlError(format!("unknown entity &{entity};")))?
            }
        };
        out.push(c);
        rest = &rest[at + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses a whole document into its root element.
fn parse(text: &str) -> Result<Element, XmlError> {
    let mut stack: Vec<Element> = vec![Element::default()];
    for token in xmlparser::Tokenizer::from(text) {
        let token = token.map_err(|e| XmlError(e.to_string()))?;
        match token {
            xmlparser::Token::ElementStart { local, .. } => stack.push(Element {
                name: local.as_str().to_string(),
                ..Element::default()
            }),
            xmlparser::Token::ElementEnd { end, .. } => match end {
                xmlparser::ElementEnd::Open => {}
                xmlparser::ElementEnd::Close(..) | xmlparser::ElementEnd::Empty => {
                    let done = stack.pop().filter(|_| !stack.is_empty());
                    let done = done.ok_or_else(|| XmlError("unbalanced elements".into()))?;
                    stack
                        .last_mut()
                        .ok_or_else(|| XmlError("unbalanced elements".into()))?
                        .children
                        .push(done);
                }
            },
            xmlparser::Token::Text { text } => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&unescape(text.as_str())?);
                }
            }
            xmlparser::Token::Cdata { text, .. } => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(text.as_str());
                }
            }
            _ => {}
        }
    }
    let mut document = stack.pop().filter(|_| stack.is_empty());
    document
        .as_mut()
        .and_then(|d| d.children.pop())
        .ok_or_else(|| XmlError("no root element".into()))
}

/// A blob in a listing.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ListedBlob {
    /// Full blob name.
    pub name: String,
    /// Content length.
    pub size: u64,
    /// Last modification.
    pub modified: Option<SystemTime>,
}

/// One page of `List Blobs`.
#[derive(Debug, Default, PartialEq)]
pub(super) struct BlobPage {
    /// Blobs, in name order.
    pub blobs: Vec<ListedBlob>,
    /// Names of the virtual directories (with the delimiter at their end).
    pub prefixes: Vec<String>,
    /// Where the next page starts; `None` on the last page.
    pub next_marker: Option<String>,
}

/// Reads a `List Blobs` answer.
pub(super) fn blob_page(text: &str) -> Result<BlobPage, XmlError> {
    let root = parse(text)?;
    let mut page = BlobPage::default();
    if let Some(blobs) = root.child("Blobs") {
        for blob in blobs.children("Blob") {
            let name = blob
                .text_of("Name")
                .ok_or_else(|| XmlError("a listed blob has no name".into()))?;
            let props = blob.child("Properties");
            let size = props
                .and_then(|p| p.text_of("Content-Length"))
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            let modified = props
                .and_then(|p| p.text_of("Last-Modified"))
                .and_then(|s| httpdate::parse_http_date(s.trim()).ok());
            page.blobs.push(ListedBlob {
                name: name.to_string(),
                size,
                modified,
            });
        }
        for prefix in blobs.children("BlobPrefix") {
            if let Some(name) = prefix.text_of("Name") {
                page.prefixes.push(name.to_string());
            }
        }
    }
    page.next_marker = root
        .text_of("NextMarker")
        .filter(|m| !m.trim().is_empty())
        .map(str::to_string);
    Ok(page)
}

/// A committed block: its id (base64, as sent) and size.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Block {
    /// Block id as the service returns it.
    pub id: String,
    /// Bytes in the block.
    pub size: u64,
}

/// Reads the committed blocks of a `Get Block List` answer.
pub(super) fn committed_blocks(text: &str) -> Result<Vec<Block>, XmlError> {
    let root = parse(text)?;
    let Some(committed) = root.child("CommittedBlocks") else {
        return Ok(Vec::new());
    };
    committed
        .children("Block")
        .map(|b| {
            let id = b
                .text_of("Name")
                .ok_or_else(|| XmlError("a block has no id".into()))?;
            let size = b
                .text_of("Size")
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| XmlError(format!("block {id} has no size")))?;
            Ok(Block {
                id: id.to_string(),
                size,
            })
        })
        .collect()
}

/// The fields of a `Get User Delegation Key` answer, in the order a SAS signs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DelegationKeyFields {
    /// `SignedOid`, `SignedTid`, `SignedStart`, `SignedExpiry`, `SignedService`,
    /// `SignedVersion`.
    pub signed: [String; 6],
    /// `Value`: the base64 key.
    pub value: String,
}

/// Reads a `Get User Delegation Key` answer.
pub(super) fn delegation_key(text: &str) -> Result<DelegationKeyFields, XmlError> {
    let root = parse(text)?;
    let field = |name: &str| {
        root.text_of(name)
            .map(|t| t.trim().to_string())
            .ok_or_else(|| XmlError(format!("user delegation key without {name}")))
    };
    Ok(DelegationKeyFields {
        signed: [
            field("SignedOid")?,
            field("SignedTid")?,
            field("SignedStart")?,
            field("SignedExpiry")?,
            field("SignedService")?,
            field("SignedVersion")?,
        ],
        value: field("Value")?,
    })
}

/// The `<Code>` of an error answer, if it has one.
pub(super) fn error_code(text: &str) -> Option<String> {
    parse(text).ok()?.text_of("Code").map(str::to_string)
}

/// A `Put Block List` body naming `committed` then `new` blocks, in order.
pub(super) fn block_list<'a>(ids: impl Iterator<Item = (&'a str, bool)>) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    for (id, committed) in ids {
        let tag = if committed {
            "Committed"
        } else {
            "Uncommitted"
        };
        out.push_str(&format!("<{tag}>{id}</{tag}>"));
    }
    out.push_str("</BlockList>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_listing_page() {
        let text = r#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="http://127.0.0.1/devstoreaccount1" ContainerName="c">
  <Prefix>docker/</Prefix><Delimiter>/</Delimiter>
  <Blobs>
    <Blob><Name>docker/a&amp;b</Name><Properties>
      <Last-Modified>Sun, 06 Dec 2026 01:00:00 GMT</Last-Modified>
      <Content-Length>42</Content-Length></Properties></Blob>
    <BlobPrefix><Name>docker/registry/</Name></BlobPrefix>
  </Blobs>
  <NextMarker>abc</NextMarker>
</EnumerationResults>"#;
        let page = blob_page(text).unwrap();
        assert_eq!(page.blobs.len(), 1);
        assert_eq!(page.blobs[0].name, "docker/a&b");
        assert_eq!(page.blobs[0].size, 42);
        assert!(page.blobs[0].modified.is_some());
        assert_eq!(page.prefixes, vec!["docker/registry/".to_string()]);
        assert_eq!(page.next_marker.as_deref(), Some("abc"));
        let last = blob_page("<EnumerationResults><Blobs/><NextMarker/></EnumerationResults>");
        assert_eq!(last.unwrap(), BlobPage::default());
    }

    #[test]
    fn reads_committed_blocks_only() {
        let text = "<BlockList><CommittedBlocks><Block><Name>QQ==</Name><Size>5</Size></Block>\
                    </CommittedBlocks><UncommittedBlocks><Block><Name>Qg==</Name><Size>1</Size>\
                    </Block></UncommittedBlocks></BlockList>";
        assert_eq!(
            committed_blocks(text).unwrap(),
            vec![Block {
                id: "QQ==".into(),
                size: 5
            }]
        );
        assert!(
            committed_blocks("<BlockList><CommittedBlocks/></BlockList>")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn reads_a_user_delegation_key() {
        let text = "<?xml version=\"1.0\" encoding=\"utf-8\"?><UserDelegationKey>\
            <SignedOid>o</SignedOid><SignedTid>t</SignedTid>\
            <SignedStart>2026-12-06T01:00:00Z</SignedStart><SignedExpiry>2026-12-06T03:00:00Z</SignedExpiry>\
            <SignedService>b</SignedService><SignedVersion>2021-08-06</SignedVersion>\
            <Value>a2V5</Value></UserDelegationKey>";
        let key = delegation_key(text).unwrap();
        assert_eq!(key.signed[0], "o");
        assert_eq!(key.signed[3], "2026-12-06T03:00:00Z");
        assert_eq!(key.value, "a2V5");
        assert!(delegation_key("<UserDelegationKey/>").is_err());
    }

    #[test]
    fn error_codes_and_malformed_answers() {
        let text = "\u{feff}<?xml version=\"1.0\"?><Error><Code>BlobNotFound</Code>\
                    <Message>x</Message></Error>";
        assert_eq!(
            error_code(text.trim_start_matches('\u{feff}')).as_deref(),
            Some("BlobNotFound")
        );
        assert_eq!(error_code("not xml"), None);
        assert!(blob_page("<a><b></a>").is_err());
        assert!(unescape("&bogus;").is_err());
        assert_eq!(unescape("&#65;&#x42;").unwrap(), "AB");
    }

    #[test]
    fn block_list_body_keeps_order() {
        assert_eq!(
            block_list([("QQ==", true), ("Qg==", false)].into_iter()),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Committed>QQ==</Committed>\
             <Uncommitted>Qg==</Uncommitted></BlockList>"
        );
    }
}
