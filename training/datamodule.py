"""`SlotDataModule`: ATIS-style splits -> vocabularies and batches for Lightning."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset

from models.synonyms import SynonymError, SynonymTable, load_synonyms
from models.vocab import Vocabulary, build_characters, normalize_word
from training.augment import MentionReplacement
from training.data import DataError, EncodedExample, Example, collate, encode, label_list, read_split, read_utterances


class SlotDataModule(pl.LightningDataModule):
    """Reads `{data_dir}/{train,valid,test}`; vocabularies come from the training split only.

    The training split is read at construction so that the vocabulary, character and label lists
    exist before the model is built (the CLI links them into the model's arguments). Batches always
    carry character ids; a model without character features ignores them.

    Args:
        data_dir: folder holding `train/`, `valid/`, `test/`.
        batch_size: sentences per training batch.
        eval_batch_size: sentences per validation/test/predict batch.
        min_word_freq: words seen fewer times in training map to `<unk>`.
        train_limit: use only the first N training sentences (quick runs and tests).
        mention_replacement: probability that each slot value of a training sentence is replaced,
            every time the sentence is read, by another training value of the same slot type
            (`training.augment`); 0: off.
        predict_file: raw utterances, one a line, for `predict`.
        num_workers: DataLoader worker processes.
        synonyms: canonical slot values (`models.synonyms`): a Rasa `synonym:` YAML file or a
            slotfill JSON file, added to `{data_dir}/synonyms.json` when that exists; they travel in
            the checkpoint and the service reports them as each slot's `canonical`.
    """

    def __init__(
        self,
        data_dir: str = "data/atis",
        batch_size: int = 32,
        eval_batch_size: int = 256,
        min_word_freq: int = 1,
        train_limit: int | None = None,
        mention_replacement: float = 0.0,
        predict_file: str | None = None,
        num_workers: int = 0,
        synonyms: str | None = None,
    ) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.predict_file = predict_file
        self.num_workers = num_workers
        if not 0.0 <= mention_replacement <= 1.0:
            raise ValueError(f"mention_replacement must be in [0, 1], got {mention_replacement}")
        self.mention_replacement = mention_replacement
        train = read_split(self.data_dir, "train")
        self.train_examples = train[:train_limit] if train_limit else train
        self.vocabulary = Vocabulary.build((ex.words for ex in self.train_examples), min_freq=min_word_freq)
        self.characters = build_characters(ex.words for ex in self.train_examples)
        self.slot_tags = label_list([tag for ex in self.train_examples for tag in ex.tags], first="O")
        # no `label` file in train/: entity-only data, and a model without an intent head
        self.intents = label_list([ex.intent for ex in self.train_examples if ex.intent is not None])
        self._tag_index = {tag: i for i, tag in enumerate(self.slot_tags)}
        self._intent_index = {intent: i for i, intent in enumerate(self.intents)}
        self._splits: dict[str, list] = {}
        self.synonyms = self._read_synonyms(synonyms)

    def _read_synonyms(self, extra: str | None) -> SynonymTable:
        """`{data_dir}/synonyms.json` when it exists, plus the `synonyms` file when given."""
        imported = self.data_dir / "synonyms.json"
        paths = ([imported] if imported.is_file() else []) + ([Path(extra)] if extra else [])
        table = SynonymTable()
        try:
            for path in paths:
                table = table.merged(load_synonyms(path))
        except SynonymError as error:
            raise DataError(str(error)) from None
        return table

    def _encoded(self, split: str) -> list:
        if split not in self._splits:
            examples = self.train_examples if split == "train" else read_split(self.data_dir, split)
            if split != "train" and examples and (examples[0].intent is None) != (not self.intents):
                has, lacks = ("train", split) if self.intents else (split, "train")
                raise DataError(
                    f"{self.data_dir / lacks / 'label'}: not found, while {self.data_dir / has / 'label'} exists; "
                    "every split needs intents or none does"
                )
            self._splits[split] = [self._encode(ex) for ex in examples]
        return self._splits[split]

    def summary(self) -> str:
        """Sentences per split, slot types, intents, and the share of validation words never seen in
        training (a high share means the character features and `<unk>` carry much of the work)."""
        counts = {split: len(self._encoded(split)) for split in ("train", "valid", "test")}
        seen = {normalize_word(word) for ex in self.train_examples for word in ex.words}
        valid_words = [normalize_word(word) for item in self._encoded("valid") for word in item.example.words]
        unseen = sum(word not in seen for word in valid_words)
        slot_types = {tag[2:] for tag in self.slot_tags if tag != "O"}
        intents = f"{len(self.intents)} intents" if self.intents else "no intents (no intent head)"
        return (
            f"data {self.data_dir}: sentences train {counts['train']}, valid {counts['valid']}, "
            f"test {counts['test']}; {len(slot_types)} slot types; {intents}; "
            f"valid words unseen in training {100 * unseen / max(len(valid_words), 1):.1f} % "
            f"({unseen} of {len(valid_words)})"
        )

    def _encode(self, example: Example) -> EncodedExample:
        return encode(example, self.vocabulary, self._tag_index, self._intent_index, self.characters)

    def _loader(self, items: list[EncodedExample] | Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            items,
            batch_size=batch_size,
            shuffle=shuffle,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        if self.mention_replacement > 0:
            augmented = MentionReplacement(self.train_examples, self.mention_replacement, self._encode)
            return self._loader(augmented, self.batch_size, shuffle=True)
        return self._loader(self._encoded("train"), self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._encoded("valid"), self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._encoded("test"), self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        if not self.predict_file:
            raise ValueError("predict needs --data.predict_file: a text file of utterances, one a line")
        utterances = [Example(tuple(words), (), "") for words in read_utterances(self.predict_file)]
        items = [self._encode(ex) for ex in utterances]
        return self._loader(items, self.eval_batch_size, shuffle=False)
