"""The recurrent slot tagger: embedding -> recurrent encoder -> per-word slot logits + intent logits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

from models.cells import SCRN, ClockworkRNN, irnn
from models.decoding import LinearChainCRF, bio_constraints, decode_tags
from models.loss import IGNORE_INDEX, slot_loss
from models.vocab import Vocabulary


def _elman(input_size: int, hidden_size: int) -> nn.Module:
    return nn.RNN(input_size, hidden_size, nonlinearity="tanh", batch_first=True)


def _lstm(input_size: int, hidden_size: int) -> nn.Module:
    return nn.LSTM(input_size, hidden_size, batch_first=True)


def _gru(input_size: int, hidden_size: int) -> nn.Module:
    return nn.GRU(input_size, hidden_size, batch_first=True)


# One unidirectional, single-layer recurrent module per entry: (input_size, hidden_size) -> module
# mapping (B, T, input_size) to ((B, T, hidden_size), state). Layers and directions are stacked by
# `RecurrentEncoder`, so every cell gets bidirectionality and depth the same way.
# Standard cells use torch's fused modules; Clockwork RNN and SCRN are hand-written (models/cells.py).
CELLS: dict[str, Callable[[int, int], nn.Module]] = {
    "elman": _elman,
    "irnn": irnn,
    "lstm": _lstm,
    "gru": _gru,
    "clockwork": ClockworkRNN,
    "scrn": SCRN,
}


def _output_size(layer: nn.Module) -> int:
    """Width of a layer's outputs: `output_size` for hand-written cells, else torch's hidden size."""
    return getattr(layer, "output_size", None) or layer.hidden_size


@dataclass(frozen=True, kw_only=True)
class TaggerOptions:
    """The tagger's architecture as a configuration chooses it (`model.tagger.*` in the training YAML).

    Args:
        cell: the recurrent cell (`CELLS`): elman, irnn, lstm, gru, clockwork or scrn.
        embedding_dim: width of the word embeddings.
        hidden_size: width of each direction's recurrent state.
        num_layers: stacked recurrent layers.
        bidirectional: run a second, backward direction in every layer.
        dropout: dropout on the encoder's inputs, between layers and on its outputs.
        forget_bias: LSTM only: the forget gate's initial bias; a positive one starts the gate open
            (Gers, Schmidhuber & Cummins 2000; Jozefowicz et al. 2015). None keeps torch's init.
        intent_head: predict the intent too.
        word_dropout: training only: each real word becomes `<unk>` with this probability, so the
            `<unk>` embedding is trained for the unseen words of test time.
        intent_pooling: how the intent head reads the sentence: `meanmax`, a linear layer on the
            masked mean and max of the encoder states; `token`, every word predicts the intent and the
            sentence takes the normalised geometric mean of the words' distributions (token-level
            intent detection, Qin et al. 2019).
        decoder: how tags are chosen (models/decoding.py), BIO-valid either way: `softmax`, per-word
            cross-entropy and constrained Viterbi at decoding; `crf`, a linear-chain CRF trained on
            the sentence's log-likelihood.
        char_channels: width of the character features concatenated to each word's embedding, so
            unseen words still get a representation (Ma & Hovy 2016). 0: off.
        char_embedding_dim: width of the character embeddings.
        char_kernel: the character CNN's kernel width (odd).
        char_encoder: how a word's characters become its features: `cnn`, a convolution max-pooled
            over the word; `lstm`, a BiLSTM whose last forward and first backward states are
            concatenated (Lample et al. 2016), `char_channels` wide in all.
        intent_to_slots: each word's tag scores also see the predicted intent distribution.
        intent_parts: score a multi-intent label (`atis_flight#atis_airfare`) as the sum of its single
            intents' scores plus its own bias, so a rare combination shares what its parts learn from
            thousands of sentences. The labels stay the classes of one softmax.
    """

    cell: str = "lstm"
    embedding_dim: int = 100
    hidden_size: int = 200
    num_layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.3
    forget_bias: float | None = 1.0
    intent_head: bool = True
    word_dropout: float = 0.0
    intent_pooling: Literal["meanmax", "token"] = "meanmax"
    decoder: Literal["softmax", "crf"] = "softmax"
    char_channels: int = 0
    char_embedding_dim: int = 30
    char_kernel: int = 3
    char_encoder: Literal["cnn", "lstm"] = "cnn"
    intent_to_slots: bool = False
    intent_parts: bool = False

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; valid cells: {', '.join(sorted(CELLS))}")
        for name in ("embedding_dim", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.intent_pooling not in ("meanmax", "token"):
            raise ValueError(f"unknown intent_pooling {self.intent_pooling!r}; valid: meanmax, token")
        if self.decoder not in ("softmax", "crf"):
            raise ValueError(f"unknown decoder {self.decoder!r}; valid: softmax, crf")
        if self.char_channels < 0:
            raise ValueError(f"char_channels must be >= 0, got {self.char_channels}")
        if self.char_kernel < 1 or self.char_kernel % 2 == 0:
            raise ValueError(f"char_kernel must be odd and >= 1, got {self.char_kernel}")
        if self.char_encoder not in ("cnn", "lstm"):
            raise ValueError(f"unknown char_encoder {self.char_encoder!r}; valid: cnn, lstm")
        if self.char_encoder == "lstm" and self.char_channels % 2:
            raise ValueError(f"char_encoder lstm needs an even char_channels, got {self.char_channels}")
        if self.intent_to_slots and not self.intent_head:
            raise ValueError("intent_to_slots needs the intent head")
        for name in ("dropout", "word_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


@dataclass(frozen=True)
class TaggerConfig(TaggerOptions):
    """The options plus the sizes the training data fixes: everything that rebuilds the tagger,
    stored in every checkpoint. `char_vocab_size` counts the character list (0 without one). The
    sizes come first and may be positional; the options are keywords."""

    vocab_size: int
    num_tags: int
    num_intents: int
    char_vocab_size: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("vocab_size", "num_tags"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.char_channels > 0 and self.char_vocab_size < 3:
            raise ValueError("character features need a character vocabulary (char_vocab_size >= 3)")
        if self.intent_head and self.num_intents < 1:
            raise ValueError("num_intents must be >= 1 when the intent head is on")

    @classmethod
    def sized(
        cls, options: TaggerOptions, vocab_size: int, num_tags: int, num_intents: int, char_vocab_size: int = 0
    ) -> TaggerConfig:
        """`options` with the sizes that come from the data."""
        return cls(
            **asdict(options),
            vocab_size=vocab_size,
            num_tags=num_tags,
            num_intents=num_intents,
            char_vocab_size=char_vocab_size,
        )

    def options(self) -> TaggerOptions:
        """The architecture choices alone, without the data's sizes."""
        return TaggerOptions(**{f.name: getattr(self, f.name) for f in fields(TaggerOptions)})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TaggerConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown tagger config keys: {', '.join(sorted(unknown))}")
        return cls(**values)


class TaggerOutput(NamedTuple):
    tag_logits: torch.Tensor  # (B, T, num_tags): per-word scores (CRF emissions with `crf`)
    intent_logits: torch.Tensor | None  # (B, num_intents)


class CharacterCNN(nn.Module):
    """Each word's characters -> embedding -> 1-D convolution -> max over the word's characters."""

    def __init__(self, num_chars: int, embedding_dim: int, channels: int, kernel: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_chars, embedding_dim, padding_idx=Vocabulary.pad_id)
        self.convolution = nn.Conv1d(embedding_dim, channels, kernel, padding=kernel // 2)

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        """(B, T, C) character ids (0 = pad) -> (B, T, channels); pad words get zeros."""
        batch, steps, chars = char_ids.shape
        flat = char_ids.reshape(batch * steps, chars)
        # Pad characters embed to zero, like the convolution's own zero padding, so a word's features
        # do not depend on how long the batch's longest word is.
        features = self.convolution(self.embedding(flat).transpose(1, 2))  # (B*T, F, C)
        features = features.masked_fill((flat == Vocabulary.pad_id).unsqueeze(1), float("-inf")).amax(dim=2)
        features = torch.where(torch.isfinite(features), features, torch.zeros_like(features))
        return torch.relu(features).reshape(batch, steps, -1)


def reversal_index(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, T) index that reverses each sequence's first `length` steps and leaves pads in place.

    Applying it twice is the identity, so the same index reverses inputs and un-reverses outputs.
    """
    positions = torch.arange(max_len, device=lengths.device).unsqueeze(0)  # (1, T)
    lengths = lengths.unsqueeze(1)  # (B, 1)
    return torch.where(positions < lengths, lengths - 1 - positions, positions)


def _gather_time(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return values.gather(1, index.unsqueeze(-1).expand_as(values))


class CharacterBiLSTM(nn.Module):
    """Each word's characters -> embedding -> BiLSTM; the forward state after the last character and
    the backward state after the first, concatenated. Only real words run through the LSTMs."""

    def __init__(self, num_chars: int, embedding_dim: int, channels: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_chars, embedding_dim, padding_idx=Vocabulary.pad_id)
        self.forward_lstm = nn.LSTM(embedding_dim, channels // 2, batch_first=True)
        self.backward_lstm = nn.LSTM(embedding_dim, channels // 2, batch_first=True)
        self.channels = channels

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        """(B, T, C) character ids (0 = pad, right-padded) -> (B, T, channels); pad words get zeros."""
        batch, steps, chars = char_ids.shape
        flat = char_ids.reshape(batch * steps, chars)
        lengths = (flat != Vocabulary.pad_id).sum(dim=1)
        if torch.onnx.is_in_onnx_export():
            # Real words picked by index (NonZero, Gather, ScatterElements in the graph) and read
            # over all C characters, the longest word's length: no shape for the trace to freeze.
            index = torch.nonzero(lengths > 0).squeeze(1)
            features = self._features(flat.index_select(0, index), lengths.index_select(0, index), chars)
            out = torch.zeros_like(flat[:, :1], dtype=features.dtype).expand(-1, self.channels)
            out = out.scatter(0, index.unsqueeze(1).expand(-1, self.channels), features)
            return out.reshape(batch, steps, self.channels)
        real = lengths > 0
        out = self.embedding.weight.new_zeros(batch * steps, self.channels)
        if not bool(real.any()):
            return out.reshape(batch, steps, self.channels)
        # Trailing pads never reach a word's features (the forward state is read at its last
        # character, the backward LSTM reads it reversed from the start); trimming them saves steps.
        lengths = lengths[real]
        longest = int(lengths.max())
        out[real] = self._features(flat[real][:, :longest], lengths, longest)
        return out.reshape(batch, steps, self.channels)

    def _features(self, words: torch.Tensor, lengths: torch.Tensor, longest: int) -> torch.Tensor:
        """(N, L) character ids of N words and their (N,) lengths -> (N, channels)."""
        embedded = self.embedding(words)  # (N, L, E)
        forward_states, _ = self.forward_lstm(embedded)
        backward_states, _ = self.backward_lstm(_gather_time(embedded, reversal_index(lengths, longest)))
        # Each word's state after its last character: (N, 1, width) index along time.
        last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, self.channels // 2)
        return torch.cat(
            [forward_states.gather(1, last).squeeze(1), backward_states.gather(1, last).squeeze(1)], dim=-1
        )


def init_forget_bias(lstm: nn.LSTM, value: float) -> None:
    """Set the LSTM's effective forget-gate bias to `value`.

    torch keeps two bias vectors, `bias_ih` and `bias_hh`, and adds them, so the gate sees their sum.
    We put `value` in `bias_ih` and zero in `bias_hh` (gate order i, f, g, o: forget is [H:2H]).
    """
    hidden = lstm.hidden_size
    with torch.no_grad():
        for name, parameter in lstm.named_parameters():
            if name.startswith("bias_ih"):
                parameter[hidden : 2 * hidden].fill_(value)
            elif name.startswith("bias_hh"):
                parameter[hidden : 2 * hidden].zero_()


class RecurrentEncoder(nn.Module):
    """Stacked uni- or bidirectional recurrent layers over right-padded batches.

    Words are fed strictly in order. With right padding a forward pass never sees a pad before a
    real word, so real outputs do not depend on padding. The backward direction runs a second
    unidirectional module over per-sequence-reversed inputs (pads stay at the end), which gives the
    same function as `pack_padded_sequence` and is faster on CPU.
    """

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        make_cell = CELLS[config.cell]
        self.forward_layers = nn.ModuleList()
        self.backward_layers = nn.ModuleList()
        input_size = config.embedding_dim + config.char_channels  # word embedding + character features
        self.input_size = input_size
        for _ in range(config.num_layers):
            self.forward_layers.append(make_cell(input_size, config.hidden_size))
            if config.bidirectional:
                self.backward_layers.append(make_cell(input_size, config.hidden_size))
            input_size = sum(_output_size(cell[-1]) for cell in (self.forward_layers, self.backward_layers) if cell)
        self.output_size = input_size
        self.between_layers = nn.Dropout(config.dropout)
        if config.cell == "lstm" and config.forget_bias is not None:
            for module in [*self.forward_layers, *self.backward_layers]:
                init_forget_bias(module, config.forget_bias)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, E) inputs and (B,) lengths -> (B, T, H * directions) states (pads: undefined)."""
        reverse = reversal_index(lengths, inputs.size(1)) if len(self.backward_layers) else None
        states = inputs
        for layer, forward_cell in enumerate(self.forward_layers):
            if layer > 0:
                states = self.between_layers(states)
            forward_states, _ = forward_cell(states)
            if reverse is None:
                states = forward_states
            else:
                backward_states = _gather_time(self.backward_layers[layer](_gather_time(states, reverse))[0], reverse)
                states = torch.cat([forward_states, backward_states], dim=-1)
        return states


def intent_part_names(intents: list[str]) -> list[str]:
    """The single intents that the labels are made of, in first-seen order (`a#b` is made of a and b)."""
    return list(dict.fromkeys(part for label in intents for part in label.split("#")))


def intent_membership(intents: list[str]) -> torch.Tensor:
    """(labels, parts) 0/1 matrix: which single intents make up each label."""
    parts = {name: index for index, name in enumerate(intent_part_names(intents))}
    membership = torch.zeros(len(intents), len(parts))
    for row, label in enumerate(intents):
        for part in set(label.split("#")):
            membership[row, parts[part]] = 1.0
    return membership


class RecurrentTagger(nn.Module):
    """Embedding (+ character features) -> `RecurrentEncoder` -> slot scores per word; intent logits from
    pooled states. `decode` turns scores into BIO-valid tags.

    `slot_tags` gives the BIO constraints; without it (architecture-only uses such as benchmarks)
    every transition is allowed. `intents` is needed only when the config scores intents by parts.
    """

    def __init__(
        self, config: TaggerConfig, slot_tags: list[str] | None = None, intents: list[str] | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=Vocabulary.pad_id)
        self.characters = None
        if config.char_channels > 0 and config.char_encoder == "lstm":
            self.characters = CharacterBiLSTM(config.char_vocab_size, config.char_embedding_dim, config.char_channels)
        elif config.char_channels > 0:
            self.characters = CharacterCNN(
                config.char_vocab_size, config.char_embedding_dim, config.char_channels, config.char_kernel
            )
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = RecurrentEncoder(config)
        states_size = self.encoder.output_size
        tag_input_size = states_size + (config.num_intents if config.intent_to_slots else 0)
        self.tag_head = nn.Linear(tag_input_size, config.num_tags)
        self.intent_head = None
        self.intent_bias = None
        membership = torch.zeros(0)
        if config.intent_head:
            scored = config.num_intents  # with intent parts: the single intents the labels are made of
            if config.intent_parts:
                if intents is None or len(intents) != config.num_intents:
                    raise ValueError("scoring intents by parts needs the model's intent list")
                membership = intent_membership(intents)
                scored = membership.size(1)
            pooled_size = states_size if config.intent_pooling == "token" else 2 * states_size
            self.intent_head = nn.Linear(pooled_size, scored)
            if config.intent_parts:
                self.intent_bias = nn.Parameter(torch.zeros(config.num_intents))
        # Rebuilt from the intent list, not saved (like the BIO constraints below).
        self.register_buffer("intent_membership", membership, persistent=False)
        self.crf = LinearChainCRF(config.num_tags) if config.decoder == "crf" else None
        if slot_tags is not None and len(slot_tags) != config.num_tags:
            raise ValueError(f"{len(slot_tags)} slot tags for a model with {config.num_tags}")
        allowed_start, allowed = bio_constraints(slot_tags) if slot_tags is not None else (None, None)
        if allowed is None:
            allowed_start = torch.ones(config.num_tags, dtype=torch.bool)
            allowed = torch.ones(config.num_tags, config.num_tags, dtype=torch.bool)
        # Rebuilt from the tag list, not saved: checkpoints carry the list.
        self.register_buffer("allowed_start", allowed_start, persistent=False)
        self.register_buffer("allowed_transitions", allowed, persistent=False)

    def forward(
        self, token_ids: torch.Tensor, mask: torch.Tensor, char_ids: torch.Tensor | None = None
    ) -> TaggerOutput:
        """(B, T) token ids, (B, T) bool mask of real words (right-padded), and with character
        features (B, T, C) character ids -> scores."""
        lengths = mask.sum(dim=1)
        if self.training and self.config.word_dropout > 0:
            dropped = torch.rand(token_ids.shape, device=token_ids.device) < self.config.word_dropout
            token_ids = token_ids.masked_fill(dropped & mask, Vocabulary.unk_id)
        embedded = self.embedding(token_ids)  # (B, T, E)
        if self.characters is not None:
            if char_ids is None:
                raise ValueError("this model reads characters: pass char_ids")
            embedded = torch.cat([embedded, self.characters(char_ids)], dim=-1)
        states = self.dropout(self.encoder(self.dropout(embedded), lengths))  # (B, T, H')
        intent_logits = self.intent_logits(states, mask) if self.intent_head is not None else None
        if self.config.intent_to_slots:
            intent_probs = torch.softmax(intent_logits, dim=-1).unsqueeze(1).expand(-1, states.size(1), -1)
            states = torch.cat([states, intent_probs], dim=-1)
        return TaggerOutput(self.tag_head(states), intent_logits)

    def slot_loss(self, tag_logits: torch.Tensor, tag_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-sentence slot loss averaged over the batch: the summed per-word cross-entropy
        (`models.loss.slot_loss`), or with `crf` the sentence's negative log-likelihood. Words whose
        gold tag is unseen in training (`IGNORE_INDEX`) count as `O` in the CRF's path score."""
        if self.crf is None:
            return slot_loss(tag_logits, tag_ids)
        gold = tag_ids.masked_fill(tag_ids == IGNORE_INDEX, 0)
        return self.crf.negative_log_likelihood(
            tag_logits, gold, mask, self.allowed_start, self.allowed_transitions
        ).mean()

    def tag_distribution(self, tag_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, K) probability of each tag for each word: the softmax with `softmax`, the CRF's
        marginals with `crf` (what `decode` reports as a chosen tag's confidence)."""
        if self.crf is not None:
            marginals = self.crf.marginals(tag_logits, mask, self.allowed_start, self.allowed_transitions)
            return marginals.to(tag_logits.dtype)
        return torch.softmax(tag_logits.float(), dim=-1)

    def decode(self, tag_logits: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """BIO-valid tag ids (B, T) and each chosen tag's probability (B, T): its softmax probability
        with `softmax`, its CRF marginal with `crf` (`models.decoding.decode_tags`). Pads get tag 0."""
        return decode_tags(tag_logits, mask, self.allowed_start, self.allowed_transitions, self.crf)

    def intent_logits(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, H') states and (B, T) mask -> (B, num_intents) intent logits."""
        real = mask.unsqueeze(-1)  # (B, T, 1)
        lengths = mask.sum(dim=1, keepdim=True).clamp(min=1)  # (B, 1)
        if self.config.intent_pooling == "token":
            word_log_probs = torch.log_softmax(self._intent_scores(states), dim=-1)  # (B, T, I)
            return (word_log_probs * real).sum(dim=1) / lengths
        maximum = states.masked_fill(~real, float("-inf")).amax(dim=1)
        maximum = torch.where(torch.isfinite(maximum), maximum, torch.zeros_like(maximum))
        summary = (states * real).sum(dim=1) / lengths
        return self._intent_scores(torch.cat([summary, maximum], dim=-1))

    def _intent_scores(self, features: torch.Tensor) -> torch.Tensor:
        """(..., F) -> (..., num_intents): the head's scores, or with intent parts each label's parts'
        scores summed plus the label's bias."""
        scores = self.intent_head(features)
        if self.intent_bias is None:
            return scores
        return scores @ self.intent_membership.T + self.intent_bias


def build_tagger(
    config: TaggerConfig, slot_tags: list[str] | None = None, intents: list[str] | None = None
) -> RecurrentTagger:
    return RecurrentTagger(config, slot_tags, intents)
