"""Derive the regression and token-label example data from the bundled Debtags data.

Neither target is annotated by people; both come from rules, stated here:

* ``tag_count`` (regression): the number of Debtags on the package (its ``tags``
  list). A real property of each package, but a derived one.
* ``mentions`` (token_multilabel): per whitespace-separated word of the
  description, with leading/trailing punctuation stripped and lowercased:
  ``program`` when it equals the package name (or the name without a
  ``lib``/``python3-``-style prefix), ``format`` when it is in FORMATS,
  ``protocol`` when it is in PROTOCOLS. A word can carry several labels
  (``xml`` is a package name and a format).

Usage: python examples/prepare_kinds.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "data", "debtags")
FORMATS = set(
    "pdf png jpeg jpg gif svg tiff bmp webp mp3 ogg flac wav aac mp4 mkv avi mpeg webm xml html xhtml css csv "
    "json yaml toml ini tex latex postscript ps dvi epub odt ods docx xlsx rtf markdown zip gzip bzip2 xz tar "
    "rpm deb iso utf-8 unicode ascii sql sqlite hdf5 netcdf fits dicom".split()
)
PROTOCOLS = set(
    "http https ftp sftp ssh telnet smtp imap pop3 dns dhcp tcp udp ip ipv4 ipv6 snmp ldap nfs smb cifs xmpp "
    "jabber irc rtp rtsp sip vnc rdp ntp tls ssl bittorrent webdav soap rest mqtt bluetooth usb dbus d-bus".split()
)
_EDGE = re.compile(r"^[\W_]+|[\W_]+$")
_PREFIX = re.compile(r"^(lib|python3?-|r-cran-|ruby-|node-|golang-|php-|perl-|lua-)")


def word_labels(word: str, package: str) -> list[str]:
    bare = _EDGE.sub("", word).lower()
    labels = []
    if bare and bare in {package, _PREFIX.sub("", package)}:
        labels.append("program")
    if bare in FORMATS:
        labels.append("format")
    if bare in PROTOCOLS:
        labels.append("protocol")
    return labels


def convert(record: dict) -> dict:
    from mtkeras.words import split_words

    text = record["text"]
    words = [text[start:end] for start, end in split_words(text)]
    return {
        "text": text,
        "section": record["section"],
        "tag_count": float(len(record["tags"])),
        "mentions": [word_labels(word, record["package"].lower()) for word in words],
    }


def main(out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    for split in ("train", "validation"):
        with open(os.path.join(SOURCE, f"{split}.jsonl"), encoding="utf-8") as handle:
            records = [convert(json.loads(line)) for line in handle if line.strip()]
        with open(os.path.join(out_dir, f"{split}.jsonl"), "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        counts = {label: sum(label in w for r in records for w in r["mentions"]) for label in
                  ("program", "format", "protocol")}
        words = sum(len(r["mentions"]) for r in records)
        mean = sum(r["tag_count"] for r in records) / len(records)
        print(f"{split}: {len(records)} texts, {words} words, labelled words {counts}, mean tag_count {mean:.2f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/kinds-data")
