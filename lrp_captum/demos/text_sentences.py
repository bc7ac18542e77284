"""Synthetic sentiment sentences with known deciding words, built from the VADER lexicon.

No labelled corpus is available offline, so sentences are composed from neutral context
(subjects, verbs, framing phrases -- none of their words is rated in VADER) and one rated
word from the VADER lexicon (``vader_lexicon.txt`` in the ``vaderSentiment`` package,
MIT licence). The label is the sign of the word's VADER mean rating, flipped when a
negation ("not", "never") stands directly before it or before its intensifier. Some
sentences also contain a *distractor* negation in a framing clause that does not touch
the rated word ("i did not expect much , but the hotel was great ."), so the presence of
"not" alone says nothing: a bag of words cannot solve the task, word order can.

Every example records the words that decide its label (``evidence``): the rated word, and
the negation when it flips the label. Word indices refer to ``text.split(" ")``; the
WordPiece pre-tokenizer splits the text at the same places (checked by the tests).
"""
from __future__ import annotations

import importlib.util
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

CLASS_NAMES = ("negative", "positive")

# Review-friendly adjectives; their polarity and strength come from VADER. Words that
# are missing from the lexicon, weakly rated or split into several WordPieces are dropped.
_POSITIVE_CANDIDATES = """
adorable amazing amusing attractive awesome beautiful beneficial best better brilliant calming
capable charming cheerful clean clever comfortable comforting convincing creative cute delicious
delightful effective efficient elegant encouraging energetic enjoyable entertaining enthusiastic
excellent exciting fabulous fantastic fascinating favorite friendly fun funny generous gentle
glorious good gorgeous graceful grand great healthy helpful ideal impressive innovative
inspiring intelligent interesting lively lovely magnificent marvelous neat nice outstanding
peaceful perfect pleasant pleasing popular powerful promising relaxing remarkable respectful rich
romantic safe satisfying smart splendid stimulating strong successful sunny superb superior sweet
sympathetic talented thoughtful thrilling useful valuable vibrant welcoming wise wonderful worthy
""".split()
_NEGATIVE_CANDIDATES = """
annoying awful bad boring broken careless chaotic cruel damaged dangerous defective depressing
difficult dirty disappointing disastrous disgusting disturbing dreadful dull dumb embarrassing
fake flawed frightening frustrating horrible horrific inadequate inferior insulting irritating
lame meaningless messy miserable misleading nasty painful pathetic poor problematic ridiculous
rotten rude sad scary selfish sick stupid terrible tired ugly unacceptable uncomfortable unfair
unfortunate unhappy unpleasant unstable upset useless vile weak worse worst worthless wrong
""".split()

NEGATIONS = ("not", "never")
INTENSIFIERS = ("very", "really", "extremely", "incredibly", "absolutely", "so", "quite",
                "totally", "remarkably", "especially")

_SUBJECTS = [
    "the movie", "the hotel", "our waiter", "the new phone", "the second album", "this laptop",
    "the service", "the ending", "the staff", "the book", "the soundtrack", "the room",
    "the app", "the tour guide", "the last episode", "the camera", "the menu", "the delivery",
    "the lecture", "the interface", "the game", "the concert", "the coffee", "the sequel",
    "the update", "my neighbour", "the museum", "the train ride", "the keyboard", "the audiobook",
]
_VERBS = ["was", "is", "seemed", "looked", "felt", "turned out", "has been", "sounded",
          "will be", "became"]
# verbs after which a negation can stand directly before the rated word; "never" only
# where it reads as English
_NEGATABLE_VERBS = {"was": NEGATIONS, "is": NEGATIONS, "seemed": ("not",), "looked": ("not",),
                    "felt": ("not",), "sounded": ("not",), "turned out": ("not",)}
_PREFIXES = [
    "after two weeks ,", "on tuesday ,", "in the end ,", "as far as i can tell ,",
    "according to my sister ,", "at first glance ,", "for the price ,", "this morning ,",
    "by the way ,", "in short ,", "once again ,", "as i said before ,",
]
_SUFFIXES = [
    "overall", "this time", "for most of the evening", "in my opinion", "if you ask me",
    "compared to the old one", "from start to finish", "as usual", "on the whole",
    "again and again", "all week",
]
# Framing clauses that contain a negation which does NOT apply to the rated word.
_DISTRACTORS = [
    "i did not expect much , but", "we had never been there before , and",
    "i have not finished it yet , but so far", "although i never read reviews ,",
    "it was not my first visit , and", "we could not stay long , but",
    "i never write reviews , but", "it is not cheap , and",
]
CONTEXT_PHRASES = _SUBJECTS + _VERBS + _PREFIXES + _SUFFIXES + _DISTRACTORS


def vader_lexicon_path() -> Path:
    """Path of ``vader_lexicon.txt`` inside the installed ``vaderSentiment`` package."""
    spec = importlib.util.find_spec("vaderSentiment")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "The text data set needs the package 'vaderSentiment' (its vader_lexicon.txt). "
            "Install the extra: pip install 'lrp-captum[text]'", name="vaderSentiment")
    path = Path(spec.origin).resolve().parent / "vader_lexicon.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall vaderSentiment")
    return path


def load_vader_lexicon() -> dict[str, tuple[float, float]]:
    """VADER ratings: token -> (mean rating in [-4, 4], standard deviation of raters)."""
    lexicon = {}
    with open(vader_lexicon_path(), encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3:
                lexicon[parts[0]] = (float(parts[1]), float(parts[2]))
    return lexicon


def sentiment_words(vocab: set[str] | dict | None = None, min_abs_rating: float = 1.2,
                    max_rater_std: float = 2.1) -> dict[str, float]:
    """Rated adjectives used by the data set: word -> VADER mean rating.

    Parameters
    ----------
    vocab : set or dict, optional
        Tokenizer vocabulary; when given, only words that are one WordPiece are kept, so
        a negation, an intensifier and the word always fit in a 3-token window.
    min_abs_rating, max_rater_std : float
        Keep words rated at least this strongly and with raters agreeing this well.
    """
    lexicon = load_vader_lexicon()
    words = {}
    for word in _POSITIVE_CANDIDATES + _NEGATIVE_CANDIDATES:
        if word not in lexicon:
            continue
        mean, std = lexicon[word]
        expected_sign = 1 if word in _POSITIVE_CANDIDATES else -1
        if mean * expected_sign < min_abs_rating or std > max_rater_std:
            continue
        if vocab is not None and word not in vocab:
            continue
        words[word] = mean
    return words


def rated_context_words() -> list[str]:
    """Context, negation and intensifier words that VADER rates (should be empty)."""
    lexicon = load_vader_lexicon()
    words = {w for phrase in CONTEXT_PHRASES for w in phrase.split()}
    words |= set(NEGATIONS) | set(INTENSIFIERS)
    return sorted(w for w in words if w in lexicon)


@dataclass
class SentimentExample:
    """One sentence with its label and the words that decide it.

    Attributes
    ----------
    text : str
        Lower-case words joined by single spaces (punctuation is its own word).
    label : int
        0 negative, 1 positive (see ``CLASS_NAMES``).
    evidence : list of int
        Indices into ``text.split(" ")`` of the deciding words.
    sentiment_index, negation_index, intensifier_index : int or None
        Where the rated word, the flipping negation, the intensifier stand.
    distractor_negation_index : int or None
        A negation in a framing clause that does not decide the label.
    rating : float
        VADER mean rating of the rated word.
    """
    text: str
    label: int
    evidence: list[int]
    sentiment_index: int
    negation_index: int | None = None
    intensifier_index: int | None = None
    distractor_negation_index: int | None = None
    rating: float = 0.0
    words: list[str] = field(default_factory=list)

    @property
    def negated(self) -> bool:
        return self.negation_index is not None

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("words")
        return d


def _compose(rng: random.Random, word: str, rating: float, negate: bool, intensify: bool,
             distract: bool) -> SentimentExample:
    words: list[str] = []
    distractor_index = None
    if distract:
        clause = rng.choice(_DISTRACTORS).split()
        distractor_index = next(i for i, w in enumerate(clause) if w in NEGATIONS)
        words += clause
    elif rng.random() < 0.5:
        words += rng.choice(_PREFIXES).split()
    words += rng.choice(_SUBJECTS).split()
    negation_index = intensifier_index = None
    if negate:
        verb = rng.choice(sorted(_NEGATABLE_VERBS))
        words += verb.split()
        negation_index = len(words)
        words.append(rng.choice(_NEGATABLE_VERBS[verb]))
    else:
        words += rng.choice(_VERBS).split()
    if intensify:
        intensifier_index = len(words)
        words.append(rng.choice(INTENSIFIERS))
    sentiment_index = len(words)
    words.append(word)
    if rng.random() < 0.5:
        words += rng.choice(_SUFFIXES).split()
    words.append(".")
    label = int((rating > 0) != negate)
    evidence = [sentiment_index] + ([negation_index] if negate else [])
    return SentimentExample(text=" ".join(words), label=label, evidence=sorted(evidence),
                            sentiment_index=sentiment_index, negation_index=negation_index,
                            intensifier_index=intensifier_index,
                            distractor_negation_index=distractor_index, rating=rating,
                            words=words)


def make_sentiment_dataset(n: int, seed: int = 0, vocab=None, negation_rate: float = 0.5,
                           intensifier_rate: float = 0.4, distractor_rate: float = 0.3,
                           words: dict[str, float] | None = None) -> list[SentimentExample]:
    """Generate ``n`` distinct sentences, balanced between the two labels.

    Parameters
    ----------
    n : int
        Number of sentences.
    seed : int
        Random seed; the same seed gives the same sentences.
    vocab : set or dict, optional
        Tokenizer vocabulary (restricts rated words to single WordPieces).
    negation_rate, intensifier_rate, distractor_rate : float
        Fractions of sentences with a flipping negation, an intensifier, a distractor clause.
    words : dict, optional
        Rated words to draw from (word -> rating); default :func:`sentiment_words`.

    Returns
    -------
    list of SentimentExample
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = random.Random(seed)
    pool = words if words is not None else sentiment_words(vocab)
    positive = sorted(w for w, r in pool.items() if r > 0)
    negative = sorted(w for w, r in pool.items() if r < 0)
    if not positive or not negative:
        raise ValueError("need at least one positive and one negative rated word")
    seen: set[str] = set()
    examples: list[SentimentExample] = []
    attempts = 0
    while len(examples) < n:
        attempts += 1
        if attempts > 50 * n:
            raise RuntimeError(f"could not compose {n} distinct sentences from {len(pool)} words")
        want_label = len(examples) % 2
        negate = rng.random() < negation_rate
        # pick the word polarity that yields the wanted label
        pick_positive = (want_label == 1) != negate
        word = rng.choice(positive if pick_positive else negative)
        ex = _compose(rng, word, pool[word], negate, rng.random() < intensifier_rate,
                      rng.random() < distractor_rate)
        if ex.text in seen:
            continue
        seen.add(ex.text)
        examples.append(ex)
    return examples


def split_examples(examples: list, test_fraction: float = 0.2, seed: int = 0):
    """Shuffle and split into (train, test); sentences are distinct, so no text is in both."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_test = max(1, int(round(len(examples) * test_fraction)))
    test = [examples[i] for i in order[:n_test]]
    train = [examples[i] for i in order[n_test:]]
    return train, test
