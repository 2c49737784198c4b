//! The word table: name dictionaries (1990 US Census lists, see data/build_dictionaries.py),
//! ordinary words that are also names, and the small closed lists the detectors need (titles,
//! months, states, street suffixes, unit designators, directions). One hash lookup per
//! capitalized word, keyed by its lower-case ASCII form.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

pub(crate) const FIRST: u16 = 1;
pub(crate) const LAST: u16 = 1 << 1;
pub(crate) const COMMON: u16 = 1 << 2;
pub(crate) const TITLE: u16 = 1 << 3;
pub(crate) const MONTH: u16 = 1 << 4;
pub(crate) const STATE: u16 = 1 << 5;
pub(crate) const STREET: u16 = 1 << 6;
pub(crate) const UNIT: u16 = 1 << 7;
pub(crate) const DIRECTION: u16 = 1 << 8;
pub(crate) const NAME_SUFFIX: u16 = 1 << 9;
/// Two-letter state codes count only when written in capitals.
pub(crate) const STATE_CODE: u16 = 1 << 10;

const FIRST_NAMES: &str = include_str!("../data/first_names.txt");
const LAST_NAMES: &str = include_str!("../data/last_names.txt");
const COMMON_WORDS: &str = include_str!("../data/common_words.txt");

const TITLES: &[&str] = &[
    "mr", "mrs", "ms", "miss", "dr", "prof", "mx", "sr", "sra", "rev",
];
const NAME_SUFFIXES: &[&str] = &["jr", "sr", "ii", "iii", "iv"];
const MONTHS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
];
const STATE_CODES: &[&str] = &[
    "al", "ak", "az", "ar", "ca", "co", "ct", "de", "dc", "fl", "ga", "hi", "id", "il", "in", "ia",
    "ks", "ky", "la", "me", "md", "ma", "mi", "mn", "ms", "mo", "mt", "ne", "nv", "nh", "nj", "nm",
    "ny", "nc", "nd", "oh", "ok", "or", "pa", "ri", "sc", "sd", "tn", "tx", "ut", "vt", "va", "wa",
    "wv", "wi", "wy", "pr", "gu", "vi", "as", "mp", "aa", "ae", "ap",
];
/// Single words that end a state's name ("New York" ends in "york").
const STATE_WORDS: &[&str] = &[
    "alabama",
    "alaska",
    "arizona",
    "arkansas",
    "california",
    "colorado",
    "connecticut",
    "delaware",
    "florida",
    "georgia",
    "hawaii",
    "idaho",
    "illinois",
    "indiana",
    "iowa",
    "kansas",
    "kentucky",
    "louisiana",
    "maine",
    "maryland",
    "massachusetts",
    "michigan",
    "minnesota",
    "mississippi",
    "missouri",
    "montana",
    "nebraska",
    "nevada",
    "hampshire",
    "jersey",
    "mexico",
    "york",
    "carolina",
    "dakota",
    "ohio",
    "oklahoma",
    "oregon",
    "pennsylvania",
    "island",
    "tennessee",
    "texas",
    "utah",
    "vermont",
    "virginia",
    "washington",
    "wisconsin",
    "wyoming",
    "columbia",
    "rico",
];
/// USPS Publication 28 street suffixes (primary names and standard abbreviations).
pub(crate) const STREET_SUFFIXES: &[&str] = &[
    "alley",
    "aly",
    "annex",
    "anx",
    "arcade",
    "arc",
    "avenue",
    "ave",
    "av",
    "bayou",
    "byu",
    "beach",
    "bch",
    "bend",
    "bnd",
    "bluff",
    "blf",
    "bluffs",
    "bottom",
    "btm",
    "boulevard",
    "blvd",
    "branch",
    "br",
    "bridge",
    "brg",
    "brook",
    "brk",
    "brooks",
    "burg",
    "bg",
    "burgs",
    "bypass",
    "byp",
    "camp",
    "cp",
    "canyon",
    "cyn",
    "cape",
    "cpe",
    "causeway",
    "cswy",
    "center",
    "ctr",
    "centers",
    "circle",
    "cir",
    "circles",
    "cliff",
    "clf",
    "cliffs",
    "club",
    "clb",
    "common",
    "cmn",
    "commons",
    "corner",
    "cor",
    "corners",
    "course",
    "crse",
    "court",
    "ct",
    "courts",
    "cove",
    "cv",
    "coves",
    "creek",
    "crk",
    "crescent",
    "cres",
    "crest",
    "crst",
    "crossing",
    "xing",
    "crossroad",
    "xrd",
    "crossroads",
    "curve",
    "curv",
    "dale",
    "dl",
    "dam",
    "dm",
    "divide",
    "dv",
    "drive",
    "dr",
    "drives",
    "estate",
    "est",
    "estates",
    "expressway",
    "expy",
    "extension",
    "ext",
    "extensions",
    "fall",
    "falls",
    "fls",
    "ferry",
    "fry",
    "field",
    "fld",
    "fields",
    "flat",
    "flt",
    "flats",
    "ford",
    "frd",
    "fords",
    "forest",
    "frst",
    "forge",
    "frg",
    "forges",
    "fork",
    "frk",
    "forks",
    "fort",
    "ft",
    "freeway",
    "fwy",
    "garden",
    "gdn",
    "gardens",
    "gateway",
    "gtwy",
    "glen",
    "gln",
    "glens",
    "green",
    "grn",
    "greens",
    "grove",
    "grv",
    "groves",
    "harbor",
    "hbr",
    "harbors",
    "haven",
    "hvn",
    "heights",
    "hts",
    "highway",
    "hwy",
    "hill",
    "hl",
    "hills",
    "hollow",
    "holw",
    "inlet",
    "inlt",
    "island",
    "is",
    "islands",
    "isle",
    "junction",
    "jct",
    "junctions",
    "key",
    "ky",
    "keys",
    "knoll",
    "knl",
    "knolls",
    "lake",
    "lk",
    "lakes",
    "land",
    "landing",
    "lndg",
    "lane",
    "ln",
    "light",
    "lgt",
    "lights",
    "loaf",
    "lf",
    "lock",
    "lck",
    "locks",
    "lodge",
    "ldg",
    "loop",
    "mall",
    "manor",
    "mnr",
    "manors",
    "meadow",
    "mdw",
    "meadows",
    "mews",
    "mill",
    "ml",
    "mills",
    "mission",
    "msn",
    "motorway",
    "mtwy",
    "mount",
    "mt",
    "mountain",
    "mtn",
    "mountains",
    "neck",
    "nck",
    "orchard",
    "orch",
    "oval",
    "overpass",
    "opas",
    "park",
    "parks",
    "parkway",
    "pkwy",
    "parkways",
    "pass",
    "passage",
    "psge",
    "path",
    "pike",
    "pine",
    "pne",
    "pines",
    "place",
    "pl",
    "plain",
    "pln",
    "plains",
    "plaza",
    "plz",
    "point",
    "pt",
    "points",
    "port",
    "prt",
    "ports",
    "prairie",
    "pr",
    "radial",
    "radl",
    "ramp",
    "ranch",
    "rnch",
    "rapid",
    "rpd",
    "rapids",
    "rest",
    "rst",
    "ridge",
    "rdg",
    "ridges",
    "river",
    "riv",
    "road",
    "rd",
    "roads",
    "route",
    "rte",
    "row",
    "rue",
    "run",
    "shoal",
    "shl",
    "shoals",
    "shore",
    "shr",
    "shores",
    "skyway",
    "skwy",
    "spring",
    "spg",
    "springs",
    "spur",
    "square",
    "sq",
    "squares",
    "station",
    "sta",
    "stravenue",
    "stra",
    "stream",
    "strm",
    "street",
    "st",
    "streets",
    "summit",
    "smt",
    "terrace",
    "ter",
    "throughway",
    "trwy",
    "trace",
    "trce",
    "track",
    "trak",
    "trafficway",
    "trfy",
    "trail",
    "trl",
    "trailer",
    "trlr",
    "tunnel",
    "tunl",
    "turnpike",
    "tpke",
    "underpass",
    "upas",
    "union",
    "un",
    "unions",
    "valley",
    "vly",
    "valleys",
    "viaduct",
    "via",
    "view",
    "vw",
    "views",
    "village",
    "vlg",
    "villages",
    "ville",
    "vl",
    "vista",
    "vis",
    "walk",
    "walks",
    "wall",
    "way",
    "wy",
    "ways",
    "well",
    "wl",
    "wells",
];
const UNITS: &[&str] = &[
    "apt",
    "apartment",
    "suite",
    "ste",
    "unit",
    "fl",
    "floor",
    "rm",
    "room",
    "bldg",
    "building",
    "dept",
    "lot",
    "box",
];
const DIRECTIONS: &[&str] = &[
    "n",
    "s",
    "e",
    "w",
    "ne",
    "nw",
    "se",
    "sw",
    "north",
    "south",
    "east",
    "west",
    "northeast",
    "northwest",
    "southeast",
    "southwest",
];

#[derive(Default, Clone, Copy)]
pub(crate) struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let v = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
            h = (h.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
        let mut tail = 0u64;
        for (i, &b) in chunks.remainder().iter().enumerate() {
            tail |= (b as u64) << (8 * i);
        }
        h = (h.rotate_left(5) ^ tail ^ (bytes.len() as u64) << 56)
            .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        self.0 = h;
    }
}

pub(crate) type FxBuild = BuildHasherDefault<Fx>;

/// Longest word looked up; longer words have no flags.
pub(crate) const MAX_WORD: usize = 24;

pub(crate) struct WordTable {
    map: HashMap<Box<[u8]>, u16, FxBuild>,
    /// First names in frequency-neutral order, for `fake` names.
    pub(crate) first: Vec<&'static str>,
    pub(crate) last: Vec<&'static str>,
}

fn lines(s: &'static str) -> impl Iterator<Item = &'static str> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

impl WordTable {
    pub(crate) fn new() -> Self {
        let mut map: HashMap<Box<[u8]>, u16, FxBuild> = HashMap::default();
        let mut add = |w: &str, f: u16| {
            *map.entry(w.as_bytes().into()).or_insert(0) |= f;
        };
        let first: Vec<&'static str> = lines(FIRST_NAMES).collect();
        let last: Vec<&'static str> = lines(LAST_NAMES).collect();
        for w in &first {
            add(w, FIRST);
        }
        for w in &last {
            add(w, LAST);
        }
        for w in lines(COMMON_WORDS) {
            add(w, COMMON);
        }
        for w in TITLES {
            add(w, TITLE);
        }
        for w in NAME_SUFFIXES {
            add(w, NAME_SUFFIX);
        }
        for w in MONTHS {
            add(w, MONTH);
        }
        for w in STATE_CODES {
            add(w, STATE_CODE);
        }
        for w in STATE_WORDS {
            add(w, STATE);
        }
        for w in STREET_SUFFIXES {
            add(w, STREET);
        }
        for w in UNITS {
            add(w, UNIT);
        }
        for w in DIRECTIONS {
            add(w, DIRECTION);
        }
        WordTable { map, first, last }
    }

    /// Flags of a word (any case; apostrophes ignored).
    pub(crate) fn flags(&self, word: &[u8]) -> u16 {
        let mut buf = [0u8; MAX_WORD];
        let mut n = 0;
        for &b in word {
            if b == b'\'' {
                continue;
            }
            if n == MAX_WORD || !b.is_ascii_alphabetic() {
                return 0;
            }
            buf[n] = b.to_ascii_lowercase();
            n += 1;
        }
        self.map.get(&buf[..n]).copied().unwrap_or(0)
    }
}

/// The month (1–12) a month word names.
pub(crate) fn month_number(word: &[u8]) -> Option<u8> {
    let mut buf = [0u8; 9];
    if word.len() < 3 || word.len() > 9 {
        return None;
    }
    for (i, &b) in word.iter().enumerate() {
        buf[i] = b.to_ascii_lowercase();
    }
    let w = &buf[..word.len()];
    let m = match &w[..3] {
        b"jan" => 1,
        b"feb" => 2,
        b"mar" => 3,
        b"apr" => 4,
        b"may" => 5,
        b"jun" => 6,
        b"jul" => 7,
        b"aug" => 8,
        b"sep" => 9,
        b"oct" => 10,
        b"nov" => 11,
        b"dec" => 12,
        _ => return None,
    };
    MONTHS.iter().any(|x| x.as_bytes() == w).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let t = WordTable::new();
        assert!(t.first.len() > 4000 && t.last.len() == 15000);
        assert_ne!(t.flags(b"John") & FIRST, 0);
        assert_ne!(t.flags(b"SMITH") & LAST, 0);
        assert_ne!(t.flags(b"O'Brien") & LAST, 0);
        assert_ne!(t.flags(b"May") & COMMON, 0);
        assert_ne!(t.flags(b"Ave") & STREET, 0);
        assert_eq!(t.flags(b"Xqzvb"), 0);
        assert_eq!(t.flags("José".as_bytes()), 0);
        assert_eq!(month_number(b"Sept"), Some(9));
        assert_eq!(month_number(b"Mayor"), None);
    }
}
