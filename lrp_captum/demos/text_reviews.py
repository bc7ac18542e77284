"""Synthetic product, film, restaurant and hotel reviews for the transformer demo classifier.

No labelled review corpus is available offline, so reviews are composed from hand-written
neutral scaffolding (aspects such as "the battery", framing sentences such as "we went on a
friday") and sentiment words whose polarity comes from the VADER lexicon (``vader_lexicon.txt``
in ``vaderSentiment``): a candidate word is kept only if VADER rates it with the expected sign
and ``|mean| >= 1``. The label follows from how the clauses are composed:

* a clause has the polarity of its sentiment word, flipped by a negation ("isn't", "was not",
  "didn't", "not ... at all");
* contrast: in "A but B", "A, however, B", "A, yet B" the label is B's; in "although A, B" and
  "B even though A" it is the main clause B's (A has the opposite polarity);
* lists and several sentences share one polarity; a long review may concede one point of the
  other polarity ("the only downside was ...", "to be fair, ...") and ends with a verdict.

Intensifiers are the adverbs of VADER's ``BOOSTER_DICT``. Realistic noise is added with fixed
rates: contractions written with or without an apostrophe, case changes, repeated punctuation,
emoji (which the uncased BERT vocabulary maps to ``[UNK]``) and typos (a dropped, doubled or
swapped letter; mostly in sentiment words).

Every review records its ``kind`` (simple, negated, contrast, list, short, long) so that
accuracy can be broken down by phenomenon.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from lrp_captum.demos.text_sentences import CLASS_NAMES, load_vader_lexicon

# Candidate words; the sign and strength come from VADER, and words VADER does not rate are
# dropped by rated_words().
_POSITIVE_ADJECTIVES = """amazing awesome beautiful brilliant charming cheerful clean clever
comfortable delightful excellent enjoyable entertaining fabulous fantastic fascinating fun funny
generous gorgeous great good helpful impressive inspiring lovely magnificent marvelous nice
outstanding perfect pleasant pleasing remarkable satisfying smart splendid stunning superb sweet
terrific thrilling welcoming wonderful worthwhile adorable cute elegant friendly kind peaceful
relaxing romantic classy cool engaging fresh hilarious ideal interesting lively neat thoughtful
valuable vibrant heartwarming""".split()
_NEGATIVE_ADJECTIVES = """annoying awful bad boring broken careless crappy cruel damaged defective
depressing dirty disappointing disgusting dreadful dull embarrassing fake faulty flawed
frustrating gross horrible horrendous inadequate inferior irritating lame lousy messy miserable
nasty offensive painful pathetic poor rotten rude stupid terrible ugly unacceptable
uncomfortable unfriendly unpleasant useless weak worthless wrong disastrous hostile
incompetent lazy ridiculous dismal appalling dire""".split()
# how the writer felt: "I was ..."
_POSITIVE_FEELINGS = "happy glad pleased grateful delighted thrilled satisfied impressed".split()
_NEGATIVE_FEELINGS = "upset angry unhappy disappointed dissatisfied annoyed frustrated".split()
# "I <verb> it" (past, base form for negation)
_POSITIVE_VERBS = [("loved", "love"), ("enjoyed", "enjoy"), ("liked", "like"),
                   ("adored", "adore")]
_NEGATIVE_VERBS = [("hated", "hate"), ("disliked", "dislike"), ("regretted", "regret")]
# "it was a ..."
_POSITIVE_NOUNS = "masterpiece joy delight pleasure treat success winner".split()
_NEGATIVE_NOUNS = "disaster mess waste failure joke nightmare catastrophe".split()

_PROFANE = ("effing", "flipping", "flippin", "frackin", "fracking", "fricking", "frickin",
            "frigging", "friggin", "fuckin", "fucking", "fuggin", "fugging", "hella", "uber")


def intensifiers() -> tuple[str, ...]:
    """Adverbs that strengthen a word, from VADER's ``BOOSTER_DICT`` (positive increments,
    adverbs only, no profanity)."""
    from vaderSentiment.vaderSentiment import BOOSTER_DICT

    return tuple(sorted(w for w, inc in BOOSTER_DICT.items() if inc > 0 and w.isalpha() and
                        (w.endswith("ly") or w in ("so", "very", "quite")) and
                        w not in _PROFANE))

_DOMAINS = {
    "film": {
        "again": ["watch it again", "see the next one", "watch more by this director"],
        "aspects": ["the film", "the movie", "the plot", "the acting", "the cast", "the script",
                    "the dialogue", "the soundtrack", "the ending", "the visual effects",
                    "the pacing", "the camera work", "the main character", "the villain",
                    "the story", "the second half", "the director's cut", "the series",
                    "the final episode", "the humour"],
        "it": ["this film", "the movie", "it", "this show"],
        "neutral": ["we saw it on a sunday afternoon", "i watched it with my parents",
                    "it runs for about two hours", "the cinema was half full",
                    "i had read the book first", "it is based on a true story",
                    "my friend picked it", "it came out last spring"],
    },
    "restaurant": {
        "again": ["come back", "eat here again", "order from them again"],
        "aspects": ["the food", "the service", "the staff", "our waiter", "the dessert",
                    "the pasta", "the steak", "the soup", "the wine", "the portions",
                    "the atmosphere", "the coffee", "the pizza", "the menu", "the kitchen",
                    "the fries", "the bread", "the curry", "the terrace", "the bartender"],
        "it": ["this restaurant", "the place", "it", "this cafe", "dinner"],
        "neutral": ["we booked a table for six", "we went on a friday evening",
                    "we ordered three courses", "it is next to the station",
                    "we had been there once before", "it was my birthday",
                    "the restaurant opened last year", "we sat outside"],
    },
    "hotel": {
        "again": ["stay here again", "come back", "book it again"],
        "aspects": ["the room", "the bed", "the breakfast", "the pool", "the location",
                    "the reception", "the view", "the bathroom", "the spa", "the lobby",
                    "the shower", "the hotel staff", "the parking", "the wifi", "the gym",
                    "the housekeeping", "the balcony", "the check-in"],
        "it": ["this hotel", "our stay", "it", "the resort", "the apartment"],
        "neutral": ["we stayed for four nights", "we arrived late in the evening",
                    "we travelled with two children", "the hotel is near the beach",
                    "we booked it online", "it was our first trip abroad",
                    "our room was on the third floor", "we came for a wedding"],
    },
    "product": {
        "again": ["buy it again", "buy from this brand again", "order another one"],
        "aspects": ["the battery", "the screen", "the camera", "the keyboard", "the sound",
                    "the app", "the charger", "the case", "the delivery", "customer service",
                    "the price", "the headphones", "the laptop", "the phone", "the vacuum",
                    "the blender", "the printer", "the manual", "the packaging", "the strap"],
        "it": ["this product", "this phone", "it", "the device", "this purchase"],
        "neutral": ["i bought it last month", "it arrived on tuesday",
                    "i use it every day for work", "it comes in three colours",
                    "i ordered the larger model", "it was a present for my brother",
                    "i replaced my old one with it", "the box contains a cable"],
    },
    "book": {
        "again": ["read it again", "read the next one", "read more by this author"],
        "aspects": ["the book", "the novel", "the characters", "the writing", "the story",
                    "the first chapter", "the ending", "the translation", "the narrator",
                    "the audiobook", "the illustrations", "the sequel", "the dialogue"],
        "it": ["this book", "the novel", "it", "this story"],
        "neutral": ["i read it on holiday", "it has about four hundred pages",
                    "it was recommended by my book club", "i listened to the audiobook",
                    "it is the second book in a series", "i bought it at the airport",
                    "the author lives in scotland", "i finished it in a week"],
    },
}

_POSITIVE_EMOJI = ["😀", "😍", "😊", "👍", "🎉", "❤️", "🙌", "👌", "🥰", "😁"]
_NEGATIVE_EMOJI = ["😡", "😞", "👎", "😠", "😢", "🤮", "😤", "🙄", "😩", "💩"]

_NEGATING_PREFIXES = ("un", "dis", "in", "im")

_CONTRACTIONS = {"is not": "isn't", "was not": "wasn't", "did not": "didn't",
                 "do not": "don't", "would not": "wouldn't", "were not": "weren't",
                 "does not": "doesn't", "will not": "won't"}


@dataclass(frozen=True)
class Review:
    """One generated review.

    Attributes
    ----------
    text : str
    label : int
        0 negative, 1 positive (see ``CLASS_NAMES``).
    kind : str
        ``simple``, ``negated``, ``contrast``, ``list``, ``short`` or ``long``.
    """
    text: str
    label: int
    kind: str


def rated_words(min_abs_rating: float = 1.0) -> dict[str, dict[int, list]]:
    """Sentiment words kept after the VADER check, by part and polarity.

    Returns
    -------
    dict
        ``{"adjectives" | "feelings" | "verbs" | "nouns": {1: [...], -1: [...]}}``; a word is
        kept if VADER rates it with the expected sign and ``|mean| >= min_abs_rating`` (for a
        verb, its past form is checked).
    """
    lexicon = load_vader_lexicon()

    def keep(words, sign, key=lambda w: w):
        return [w for w in words if key(w) in lexicon and
                lexicon[key(w)][0] * sign >= min_abs_rating]

    return {
        "adjectives": {1: keep(_POSITIVE_ADJECTIVES, 1), -1: keep(_NEGATIVE_ADJECTIVES, -1)},
        "feelings": {1: keep(_POSITIVE_FEELINGS, 1), -1: keep(_NEGATIVE_FEELINGS, -1)},
        "verbs": {1: keep(_POSITIVE_VERBS, 1, lambda v: v[0]),
                  -1: keep(_NEGATIVE_VERBS, -1, lambda v: v[0])},
        "nouns": {1: keep(_POSITIVE_NOUNS, 1), -1: keep(_NEGATIVE_NOUNS, -1)},
    }


class _Composer:
    """Random clauses and reviews of a wanted polarity (+1 / -1)."""

    def __init__(self, rng: random.Random, words: dict) -> None:
        self.rng, self.words = rng, words
        self.intensifiers = intensifiers()

    def pick(self, seq):
        return self.rng.choice(seq)

    def adjective(self, sign: int, negated: bool = False) -> str:
        """An adjective of polarity ``sign``, sometimes intensified.

        Under a negation, words that are negations themselves ("unfriendly", "dislike") are
        avoided ("not unfriendly" is no clear praise), and so are intensified negative words
        ("not very bad" is no clear praise either).
        """
        choices = self.words["adjectives"][sign]
        if negated:
            choices = [w for w in choices if not w.startswith(_NEGATING_PREFIXES)]
        adj = self.pick(choices)
        if self.rng.random() < 0.35 and (sign > 0 or not negated):
            adj = f"{self.pick(self.intensifiers)} {adj}"
        return adj

    def clause(self, sign: int, domain: dict) -> tuple[str, str]:
        """One clause of polarity ``sign`` and whether it is negated (``kind``)."""
        r = self.rng.random()
        negate = self.rng.random() < 0.35
        word_sign = -sign if negate else sign
        aspect = self.pick(domain["aspects"])
        be = self.pick(["was", "is"]) if not aspect.endswith("s") or aspect.endswith("ss") \
            else self.pick(["were", "are"])
        kind = "negated" if negate else "simple"
        if r < 0.48:
            adj = self.adjective(word_sign, negated=negate)
            if not negate:
                return f"{aspect} {be} {adj}", kind
            form = self.rng.random()
            if form < 0.4:
                return f"{aspect} {be} not {adj}", kind
            if form < 0.65:
                return f"{aspect} {be} not {adj.split()[-1]} at all", kind
            if form < 0.8:
                return f"{aspect} {be} never {adj.split()[-1]}", kind
            if form < 0.9 or word_sign < 0:
                return f"there was nothing {adj.split()[-1]} about {aspect}", kind
            return f"{aspect} {be} hardly {adj.split()[-1]}", kind
        if r < 0.54:
            again = self.pick(domain["again"])
            if sign > 0:
                return f"i will {self.pick(['', 'definitely ', 'happily ', 'surely '])}{again}", \
                    "simple"
            return f"i will {self.pick(['never', 'not', 'never ever'])} {again}", "negated"
        if r < 0.6:
            it = self.pick(domain["it"])
            if sign > 0:
                return f"i would {self.pick(['', 'definitely ', 'really '])}recommend {it}", \
                    "simple"
            return f"i would not recommend {it}{self.pick(['', ' to anyone'])}", "negated"
        if r < 0.72:
            past, base = self.pick(self.words["verbs"][word_sign])
            obj = self.pick([aspect] + domain["it"])
            who = self.pick(["i", "we"])
            if not negate:
                return f"{who} {past} {obj}", kind
            if base.startswith(_NEGATING_PREFIXES) or base == "regret":
                # "did not dislike/regret" is no clear statement: say it without negation
                return f"{who} {self.pick(self.words['verbs'][sign])[0]} {obj}", "simple"
            if self.rng.random() < 0.8:
                return f"{who} did not {base} {obj}", kind
            return f"i can't say i {past} {obj}", kind
        if r < 0.86:
            feeling = self.pick([w for w in self.words["feelings"][word_sign]
                                 if not (negate and w.startswith(_NEGATING_PREFIXES))])
            who = self.pick(["i was", "we were", "my wife was", "my kids were"])
            about = self.pick(["with " + aspect, "", "about " + aspect])
            if not negate:
                return f"{who} {feeling} {about}".strip(), kind
            return f"{who} not {feeling} {about}".strip(), kind
        noun = self.pick(self.words["nouns"][sign])
        article = "an" if noun[0] in "aeiou" else "a"
        extra = self.pick(["", "complete ", "total ", "real ", "little "]) if sign < 0 else \
            self.pick(["", "real ", "little ", "pure "])
        if extra.strip() in ("complete", "total") and noun in ("joke",):
            extra = ""
        return f"{self.pick(domain['it'])} was {article} {extra}{noun}", "simple"

    def fragment(self, sign: int, domain: dict) -> str:
        """``adjective aspect`` without the article, for lists ("great location")."""
        aspect = self.pick(domain["aspects"]).split(" ", 1)[-1]
        return f"{self.pick(self.words['adjectives'][sign])} {aspect}"

    def review(self, sign: int, kind: str, domain: dict) -> tuple[str, str]:
        if kind == "contrast":
            a, _ = self.clause(-sign, domain)
            b, _ = self.clause(sign, domain)
            form = self.rng.random()
            if form < 0.45:
                return f"{a}{self.pick([', but', ' but', '. but'])} {b}", kind
            if form < 0.6:
                return f"{a}, however, {b}", kind
            if form < 0.7:
                return f"{a}, yet {b}", kind
            if form < 0.88:
                return f"{self.pick(['although', 'though', 'even though', 'while'])} {a}, {b}", \
                    kind
            return f"{b} even though {a}", kind
        if kind == "list":
            items = [self.fragment(sign, domain) for _ in range(self.rng.randint(2, 4))]
            if self.rng.random() < 0.5:
                return ", ".join(items[:-1]) + " and " + items[-1], kind
            first, _ = self.clause(sign, domain)
            second, _ = self.clause(sign, domain)
            return f"{first} and {second}", kind
        if kind == "short":
            return self.short(sign), kind
        if kind == "long":
            return self.long(sign, domain), kind
        return self.clause(sign, domain)

    def short(self, sign: int) -> str:
        r = self.rng.random()
        if r < 0.35:
            return self.adjective(sign)
        if r < 0.55:
            return f"{self.pick(self.words['verbs'][sign])[0]} it"
        if r < 0.75:
            noun = self.pick(self.words["nouns"][sign])
            return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"
        if r < 0.9:
            return f"not {self.pick(self.words['adjectives'][-sign])}"
        return f"{self.pick(['so', 'very', 'really'])} {self.pick(self.words['feelings'][sign])}"

    def long(self, sign: int, domain: dict) -> str:
        parts = [self.pick(domain["neutral"]) for _ in range(self.rng.randint(1, 3))]
        for _ in range(self.rng.randint(2, 4)):
            kind = self.pick(["simple", "simple", "simple", "list", "contrast"])
            parts.insert(self.rng.randint(0, len(parts)), self.review(sign, kind, domain)[0])
        if self.rng.random() < 0.5:
            concession, _ = self.clause(-sign, domain)
            lead = self.pick(["the only downside was that", "to be fair,",
                              "the one thing i would change is that", "on the other hand,"])
            parts.insert(self.rng.randint(1, len(parts)), f"{lead} {concession}")
        verdict, _ = self.clause(sign, {**domain, "aspects": domain["it"]})
        parts.append(self.pick(["overall, ", "all in all, ", "in the end, ", ""]) + verdict)
        return ". ".join(parts)


def _noisy(rng: random.Random, text: str, sign: int, words: dict) -> str:
    """Contractions, typos in sentiment words, case, punctuation and emoji."""
    if rng.random() < 0.6:
        for full, short in _CONTRACTIONS.items():
            written = short if rng.random() < 0.85 else short.replace("'", "")
            text = re.sub(rf"\b{full}\b", written, text)
    sentiment = {w for part in words.values() for side in part.values() for w in side
                 if isinstance(w, str)}
    tokens = text.split(" ")
    for i, tok in enumerate(tokens):
        rate = 0.2 if tok in sentiment else 0.03
        if len(tok) > 3 and tok.isalpha() and rng.random() < rate:
            tokens[i] = _typo(rng, tok)
    text = " ".join(tokens)
    r = rng.random()
    if r < 0.55:
        text = ". ".join(s[:1].upper() + s[1:] for s in text.split(". "))
        text = text.replace(" i ", " I ")
    elif r < 0.6:
        text = text.upper()
    text += rng.choice([".", ".", ".", "!", "!!", "!!!", "...", ""])
    if rng.random() < 0.12:
        emoji = _POSITIVE_EMOJI if sign > 0 else _NEGATIVE_EMOJI
        text += " " + "".join(rng.choice(emoji) for _ in range(rng.randint(1, 3)))
    return text


def _typo(rng: random.Random, word: str) -> str:
    i = rng.randrange(1, len(word) - 1)
    kind = rng.random()
    if kind < 0.4:
        return word[:i] + word[i + 1:]                       # dropped letter
    if kind < 0.7:
        return word[:i] + word[i] + word[i:]                 # doubled letter
    return word[:i - 1] + word[i] + word[i - 1] + word[i + 1:]  # swapped letters


KIND_RATES = {"simple": 0.2, "negated": 0.2, "contrast": 0.26, "list": 0.1, "short": 0.12,
              "long": 0.12}


def make_review_dataset(n: int, seed: int = 0, kind_rates: dict | None = None) -> list[Review]:
    """``n`` distinct generated reviews, half positive, half negative.

    Parameters
    ----------
    n : int
        Number of reviews.
    seed : int
        The same seed gives the same reviews.
    kind_rates : dict, optional
        Share of each kind (default :data:`KIND_RATES`).

    Returns
    -------
    list of Review
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = random.Random(seed)
    words = rated_words()
    composer = _Composer(rng, words)
    rates = kind_rates or KIND_RATES
    kinds, weights = list(rates), list(rates.values())
    domains = list(_DOMAINS.values())
    seen: set[str] = set()
    out: list[Review] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n:
            raise RuntimeError(f"could not compose {n} distinct reviews")
        label = len(out) % 2
        sign = 1 if label else -1
        kind = rng.choices(kinds, weights)[0]
        domain = rng.choice(domains)
        if kind == "negated":
            text, got = composer.clause(sign, domain)
            if got != "negated":
                continue
        else:
            text, _ = composer.review(sign, kind, domain)
        text = _noisy(rng, text, sign, words)
        if text in seen:
            continue
        seen.add(text)
        out.append(Review(text=text, label=label, kind=kind))
    return out


__all__ = ["Review", "make_review_dataset", "rated_words", "intensifiers", "CLASS_NAMES",
           "KIND_RATES"]
