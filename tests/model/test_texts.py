from pipeline.model.corpus import load_documents
from pipeline.model.texts import (
    NEWS_WORDS,
    WIKI_DOC_WORDS,
    _sense_line,
    news_sentences,
    pydoc_topics,
    stdlib_docstrings,
    wikipedia_documents,
    wordnet_dir,
    wordnet_documents,
)


def test_a_wordnet_data_line_becomes_words_and_gloss():
    line = ("01234567 05 a 02 quick 0 speedy(a) 0 001 & 01234568 a 0000 | accomplished rapidly; "
            "\"a quick inspection\"  \n")
    assert _sense_line(line) == (5, "quick, speedy: accomplished rapidly; \"a quick inspection\"")
    assert _sense_line("  1 This software and database is being provided\n") is None


def test_wordnet_is_found_and_grouped_by_lexicographer_file():
    assert wordnet_dir() is not None
    docs = wordnet_documents()
    assert len(docs) > 2500 and sum(len(d.split()) for d in docs) > 1_500_000
    assert all(1 <= len(d.splitlines()) <= 40 for d in docs)
    assert docs == wordnet_documents()  # deterministic: the split depends on it


def test_wikipedia_excerpt_is_prose_without_markup_in_passages():
    docs = wikipedia_documents()
    assert len(docs) > 500 and sum(len(d.split()) for d in docs) > 400_000
    assert all(len(d.split()) <= 3 * WIKI_DOC_WORDS for d in docs)  # cut at paragraph ends
    assert not any("\'\'" in d or "[[" in d or "{{" in d for d in docs)
    assert any("anarchist" in d.lower() for d in docs)  # the excerpt's first article
    assert docs == wikipedia_documents()


def test_stdlib_docstrings_are_english_and_deterministic():
    docs = stdlib_docstrings()
    assert len(docs) > 1000 and sum(len(d.split()) for d in docs) > 100_000
    assert len(set(docs)) == len(docs) and all(len(d.split()) >= 20 for d in docs)
    assert docs == stdlib_docstrings()


def test_news_sentences_are_short_distinct_and_never_in_the_training_text():
    news = news_sentences()
    assert len(news) > 2000 and len(set(news)) == len(news)
    assert all(NEWS_WORDS[0] <= len(s.split()) <= NEWS_WORDS[1] for s in news)
    sample = news_sentences(1500, seed=0)
    assert len(sample) == 1500 and sample == news_sentences(1500, seed=0) and set(sample) <= set(news)
    # another source altogether: no sentence appears in any text the defaults train or hold out on
    _, docs = load_documents()
    text = "\n".join(docs + pydoc_topics())
    assert not any(s in text for s in news[:300])
