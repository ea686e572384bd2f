"""Answers with highlighted citations: retrieval-augmented generation's "where does it say so?".

A handful of built-in documents are indexed with the offline stand-in encoder
("offline-minilm"; ``COLBRIDGE_MODEL`` picks another). For each question:

1. LangChain's ``ColBERTRetriever`` with ``return_passage=True`` returns the best documents,
   a long one as its best passage (``metadata["passage"]`` says where it lies in the stored
   text), so the context stays small;
2. ``ColBERTRerank`` with ``explain=True`` scores every sentence of those texts by exact
   MaxSim and says which words matched (``metadata["highlights"]``);
3. the "answer" is extractive, so nothing needs a language model or the network: the best
   sentence, and each cited sentence is printed with its document id, its character span in
   the stored document and its matched words between ``**``.

Swap step 3 for a chat model (given the sentences or the passages) and the citations stay.

    uv run python examples/rag_citations.py
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from colbridge import ColBERTModel, EmbeddedIndex
from langchain_colbridge import ColBERTRerank, ColBERTRetriever
from langchain_core.documents import Document

DOCUMENTS = {
    "tea-guide": (
        "Green tea is steeped for two to three minutes in water at about 80 degrees Celsius; "
        "boiling water scalds the leaves and makes the cup bitter. Black tea takes hotter "
        "water and four to five minutes. Oolong sits between the two."
    ),
    "kettle-manual": (
        "Thank you for choosing the Aster electric kettle. Read these instructions before the "
        "first use and keep them for later. The kettle holds 1.7 litres; never fill it above "
        "the MAX mark or below the MIN mark, and always place it on its own base, which must "
        "stand on a dry, level surface away from the edge of the worktop. Before the first "
        "use, boil a full kettle of water twice and pour it away. "
        "Limescale builds up in hard-water areas and slows the kettle down. To descale the "
        "kettle, fill it to the MIN mark with equal parts water and white vinegar, leave it "
        "overnight, then rinse it three times with clean water. Do not use abrasive cleaners "
        "on the stainless-steel body; wipe it with a damp cloth. "
        "The kettle switches itself off when the water boils, when it is lifted off its base "
        "and when it is switched on empty. If it switched off because it ran dry, let it cool "
        "for ten minutes before refilling it. The filter in the spout is removable: lift it "
        "out when the kettle is cold and rinse it under the tap. "
        "The guarantee covers two years from the date of purchase and does not cover "
        "limescale damage, misuse, or repairs by anyone other than an authorised service "
        "centre. Dispose of the kettle at an electrical recycling point, not with household "
        "waste. "
        "Technical data: rated voltage 220 to 240 volts, rated power 2200 watts, capacity 1.7 "
        "litres, cord length 75 centimetres, weight 1.1 kilograms without water. The base "
        "turns freely, so the kettle can be set down from any direction, and the cord can be "
        "wound around the foot of the base to shorten it. Children from eight years of age "
        "may use the kettle under supervision; keep the kettle and its cord out of the reach "
        "of younger children. Never immerse the kettle, its base or the plug in water or any "
        "other liquid, and never operate it with wet hands."
    ),
    "bread": (
        "Sourdough bread rises because wild yeasts in the starter release carbon dioxide. "
        "Lactic acid bacteria in the same starter give the loaf its sour taste. A cold, slow "
        "rise in the fridge deepens the flavour."
    ),
    "pulsars": (
        "Pulsars are spinning neutron stars whose beams of radio waves sweep past the Earth "
        "like a lighthouse, so they seem to blink. Jocelyn Bell Burnell found the first pulsar "
        "in 1967."
    ),
    "violin": (
        "A violin has four strings tuned in perfect fifths: G, D, A and E. The bow is strung "
        "with horsehair, rubbed with rosin so that it grips the strings."
    ),
}

QUESTIONS = [
    "How long should green tea steep, and how hot should the water be?",
    "How do I descale the kettle?",
    "What gives sourdough bread its sour taste?",
    "What is the rated voltage and power of the kettle?",
]


SENTENCE = re.compile(r"\S.*?(?:[.!?](?=\s|$)|$)", re.S)


def sentences(doc: Document) -> list[Document]:
    """The sentences of a retrieved document, each knowing its source and where it starts in
    the stored text (``page_content`` is the best passage when the document was split)."""
    base = doc.metadata["passage"][0] if "passage" in doc.metadata else 0
    return [Document(page_content=m.group(), metadata={"source": doc.id, "start": base + m.start()})
            for m in SENTENCE.finditer(doc.page_content)]


def marked(doc: Document) -> str:
    """A sentence with its highlights between ``**``."""
    text, out, at = doc.page_content, [], 0
    for a, b in sorted(doc.metadata["highlights"]):
        out += [text[at:a], "**", text[a:b], "**"]
        at = b
    return "".join([*out, text[at:]])


def main() -> None:
    model_name = os.environ.get("COLBRIDGE_MODEL", "").strip() or "offline-minilm"
    with (tempfile.TemporaryDirectory(prefix="colbridge-rag-") as scratch,
          EmbeddedIndex(Path(scratch) / "index", model=ColBERTModel(model_name)) as index):
        index.add(list(DOCUMENTS.values()), ids=list(DOCUMENTS))
        print(f"Indexed {len(DOCUMENTS)} documents with {model_name}.")
        retriever = ColBERTRetriever(index=index, k=3, return_passage=True)
        best_sentences = ColBERTRerank(model=index.model, top_n=2, explain=True)
        for question in QUESTIONS:
            context = retriever.invoke(question)
            cited = best_sentences.compress_documents(
                [s for doc in context for s in sentences(doc)], question)
            print(f"\nQ: {question}")
            print("Context: " + ", ".join(
                doc.id + (" (passage {}-{})".format(*doc.metadata["passage"])
                          if "passage" in doc.metadata else "") for doc in context))
            print(f"A: {cited[0].page_content}")
            for number, s in enumerate(cited, 1):
                start = s.metadata["start"]
                print(f"  [{number}] {s.metadata['source']} chars {start}-"
                      f"{start + len(s.page_content)}: {marked(s)}")


if __name__ == "__main__":
    main()
