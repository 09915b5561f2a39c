"""Synthetic text corpora: small, deterministic from a seed, learnable by tiny models.

Each ``make_<kind>(n, seed, ...)`` returns ``n`` dicts; the same (n, seed) gives the same list.
Vocabularies are tiny and fixed, so a tokenizer trained on a few hundred examples covers them.

- ``make_grammar_documents``: LM / MLM / NSP documents from a probabilistic grammar whose main
  verb agrees in number with its subject across an attractor ("the dog near the cats sees ...").
- ``make_summarization``: documents where the sentence cued by "in short ," is the key one;
  the summary keeps its noun, verb, number and object.
- ``make_translation``: English-like source, toy-language target through ``LEXICON`` with
  adjectives after nouns and the verb last.
- ``make_sentiment``, ``make_ner``, ``make_qa``: encoder tasks (negation flips the label;
  IOB2 tags per word; extractive answers with character offsets).
"""

from __future__ import annotations

import random

# ---- grammar with subject-verb agreement ------------------------------------------------------

NOUNS_SG_PL = {
    "dog": "dogs", "cat": "cats", "bird": "birds", "child": "children", "teacher": "teachers",
    "farmer": "farmers", "doctor": "doctors", "king": "kings", "girl": "girls", "boy": "boys",
}
VERBS_PL_SG = {
    "see": "sees", "like": "likes", "chase": "chases", "help": "helps",
    "follow": "follows", "watch": "watches", "find": "finds", "know": "knows",
}
ADJECTIVES = ["small", "big", "old", "young", "happy", "quiet", "red", "clever"]
PREPOSITIONS = ["near", "behind", "with"]


def _noun_phrase(rng: random.Random, plural: bool) -> str:
    noun = rng.choice(list(NOUNS_SG_PL))
    adj = f"{rng.choice(ADJECTIVES)} " if rng.random() < 0.3 else ""
    return f"the {adj}{NOUNS_SG_PL[noun] if plural else noun}"


def _agreeing_sentence(rng: random.Random, attractor_prob: float) -> str:
    """NP [P NP'] V NP . with V agreeing with the first NP, never with the attractor NP'."""
    plural = rng.random() < 0.5
    words = [_noun_phrase(rng, plural)]
    if rng.random() < attractor_prob:
        words.append(f"{rng.choice(PREPOSITIONS)} {_noun_phrase(rng, rng.random() < 0.5)}")
    verb = rng.choice(list(VERBS_PL_SG))
    words += [verb if plural else VERBS_PL_SG[verb], _noun_phrase(rng, rng.random() < 0.5), "."]
    return " ".join(words)


def make_grammar_documents(
    n: int, seed: int, min_sentences: int = 3, max_sentences: int = 6, attractor_prob: float = 0.3
) -> list[dict]:
    """{"text": the document, "sentences": list[str]} (sentences kept for NSP pairs)."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        sents = [_agreeing_sentence(rng, attractor_prob) for _ in range(rng.randint(min_sentences, max_sentences))]
        docs.append({"text": " ".join(sents), "sentences": sents})
    return docs


# ---- summarization --------------------------------------------------------------------------

SUMMARY_CUE = "in short ,"
_ACTORS = ["farmer", "baker", "sailor", "teacher", "painter", "doctor", "miner", "singer"]
_PLACES = ["valley", "harbor", "city", "village", "forest", "island"]
_PAST_VERBS = ["bought", "sold", "found", "painted", "built", "lost", "carried", "counted"]
_NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine"]
_OBJECTS = ["boats", "houses", "apples", "horses", "lamps", "chairs", "books", "stones"]
_WEATHER = ["cold", "warm", "grey", "windy"]
_FILLERS = [
    "the weather was {weather} that day .", "nobody in the {place} said a word .",
    "a {actor} walked to the {place} .", "the road to the {place} was long .",
]


def _event(rng: random.Random) -> tuple[str, list[str]]:
    """A full event sentence and its compressed form [actor, verb, number, object]."""
    actor, verb, num, obj = (rng.choice(x) for x in (_ACTORS, _PAST_VERBS, _NUMBERS, _OBJECTS))
    adj, place, obj_adj = rng.choice(ADJECTIVES), rng.choice(_PLACES), rng.choice(ADJECTIVES)
    return f"the {adj} {actor} from the {place} {verb} {num} {obj_adj} {obj} .", [actor, verb, num, obj]


def make_summarization(n: int, seed: int, min_sentences: int = 3, max_sentences: int = 5) -> list[dict]:
    """{"document", "summary"}: the cued event sentence, compressed to "actor verb number object .".

    Other sentences are fillers or uncued events of the same shape, so only the cue tells
    which event to keep.
    """
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        size = rng.randint(min_sentences, max_sentences)
        sents = []
        for _ in range(size - 1):
            if rng.random() < 0.5:
                sents.append(_event(rng)[0])
            else:
                weather, place, actor = rng.choice(_WEATHER), rng.choice(_PLACES), rng.choice(_ACTORS)
                sents.append(rng.choice(_FILLERS).format(weather=weather, place=place, actor=actor))
        key, short = _event(rng)
        sents.insert(rng.randrange(size), f"{SUMMARY_CUE} {key}")
        out.append({"document": " ".join(sents), "summary": " ".join(short) + " ."})
    return out


# ---- translation ----------------------------------------------------------------------------

LEXICON = {
    "the": "ko",
    "dog": "vano", "cat": "mirel", "bird": "tesk", "horse": "paldo", "fish": "runa", "man": "zeth",
    "woman": "lira", "child": "nebo", "king": "oskar", "farmer": "dunil", "baker": "suma", "sailor": "kaveth",
    "small": "pik", "big": "gron", "old": "vel", "young": "tari", "red": "rosk", "happy": "milu",
    "quiet": "sen", "clever": "akri",
    "sees": "bara", "likes": "helo", "chases": "vunda", "helps": "teko",
    "follows": "simar", "finds": "lokan", "feeds": "purra", "knows": "enda",
}
TRANSLATION_NOUNS = [
    "dog", "cat", "bird", "horse", "fish", "man", "woman", "child", "king", "farmer", "baker", "sailor",
]
TRANSLATION_ADJECTIVES = ["small", "big", "old", "young", "red", "happy", "quiet", "clever"]
TRANSLATION_VERBS = ["sees", "likes", "chases", "helps", "follows", "finds", "feeds", "knows"]


def _np_pair(rng: random.Random, adj_prob: float) -> tuple[list[str], list[str]]:
    """("the [adj] noun", "ko noun' [adj']"): the adjective moves after the noun."""
    noun = rng.choice(TRANSLATION_NOUNS)
    adj = [rng.choice(TRANSLATION_ADJECTIVES)] if rng.random() < adj_prob else []
    return ["the", *adj, noun], [LEXICON["the"], LEXICON[noun], *(LEXICON[a] for a in adj)]


def make_translation(n: int, seed: int, adj_prob: float = 0.5) -> list[dict]:
    """{"source", "target"}: SVO "the [adj] N V the [adj] N" -> SOV "ko N [A] ko N [A] V"."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        (subj_src, subj_tgt), (obj_src, obj_tgt) = _np_pair(rng, adj_prob), _np_pair(rng, adj_prob)
        verb = rng.choice(TRANSLATION_VERBS)
        out.append({
            "source": " ".join([*subj_src, verb, *obj_src]),
            "target": " ".join([*subj_tgt, *obj_tgt, LEXICON[verb]]),
        })
    return out


# ---- sentiment ------------------------------------------------------------------------------

POSITIVE_WORDS = ["good", "great", "excellent", "wonderful", "pleasant", "fun"]
NEGATIVE_WORDS = ["bad", "awful", "boring", "terrible", "dull", "poor"]
_SUBJECTS = ["the movie", "the food", "the service", "the book", "the hotel", "the show", "the music"]
_OPENERS = ["", "honestly , ", "i think ", "overall , ", "to be fair , "]
_INTENSIFIERS = ["", "really ", "very ", "quite "]


def make_sentiment(n: int, seed: int, negation_prob: float = 0.4) -> list[dict]:
    """{"text", "label"}: label 1 positive, 0 negative; "not" flips the adjective's polarity."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        positive_word = rng.random() < 0.5
        negated = rng.random() < negation_prob
        adj = rng.choice(POSITIVE_WORDS if positive_word else NEGATIVE_WORDS)
        neg = "not " if negated else ""
        text = f"{rng.choice(_OPENERS)}{rng.choice(_SUBJECTS)} was {neg}{rng.choice(_INTENSIFIERS)}{adj} ."
        out.append({"text": text, "label": int(positive_word != negated)})
    return out


# ---- named entities -------------------------------------------------------------------------

NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
PEOPLE = ["Anna Berg", "John Smith", "Maria Lopez", "Li Wei", "Omar Haddad", "Eva", "Noah Klein", "Sara Jane Moss"]
PLACES = ["Paris", "New Harbor", "Lake Town", "Berlin", "San Marco", "Oslo", "Green Valley"]
ORGS = ["Blue River Corp", "Acme", "Northwind Bank", "City Hospital", "Orbit Labs", "Union Post"]
_NER_TEMPLATES = [
    "{PER} works for {ORG} in {LOC} .", "{PER} visited {LOC} last week .",
    "{ORG} opened an office in {LOC} .", "{PER} met {PER} at {ORG} .",
    "yesterday {PER} flew from {LOC} to {LOC} .", "the report from {ORG} was late .",
]


def make_ner(n: int, seed: int) -> list[dict]:
    """{"tokens": list[str], "tags": list[str]} with IOB2 tags from ``NER_LABELS``, one per word."""
    rng = random.Random(seed)
    pools = {"PER": PEOPLE, "LOC": PLACES, "ORG": ORGS}
    out = []
    for _ in range(n):
        tokens, tags = [], []
        for piece in rng.choice(_NER_TEMPLATES).split():
            kind = piece[1:-1] if piece.startswith("{") else None
            words = rng.choice(pools[kind]).split() if kind else [piece]
            tokens += words
            tags += ([f"B-{kind}"] + [f"I-{kind}"] * (len(words) - 1)) if kind else ["O"]
        out.append({"tokens": tokens, "tags": tags})
    return out


# ---- extractive question answering ----------------------------------------------------------

COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
_QA_FACTS = [
    ("lives", "{person} lives in {value} .", "where does {person} live ?", PLACES),
    ("works", "{person} works for {value} .", "who does {person} work for ?", ORGS),
    ("likes", "{person} likes the color {value} .", "what color does {person} like ?", COLORS),
]


def make_qa(n: int, seed: int, people_per_context: int = 2) -> list[dict]:
    """{"id", "context", "question", "answer_text", "answer_start"} (SQuAD-style char offset).

    Each context states three facts about each of a few people, so the answer depends on whom
    the question names; ``context[answer_start:][:len(answer_text)] == answer_text``.
    """
    rng = random.Random(seed)
    out = []
    for i in range(n):
        people = rng.sample(PEOPLE, people_per_context)
        context, spans = "", {}
        for person in people:
            for key, statement, _, values in _QA_FACTS:
                value = rng.choice(values)
                prefix = statement.format(person=person, value="\0").split("\0")[0]
                spans[(person, key)] = (value, len(context) + len(prefix))
                context += statement.format(person=person, value=value) + " "
        person = rng.choice(people)
        key, _, question, _ = rng.choice(_QA_FACTS)
        answer, start = spans[(person, key)]
        out.append({
            "id": f"{seed}-{i}", "context": context.strip(), "question": question.format(person=person),
            "answer_text": answer, "answer_start": start,
        })
    return out
