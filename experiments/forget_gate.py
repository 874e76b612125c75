"""The forget gate (lecture claim 6): the LSTM tagger on ATIS with forget-gate bias 0, 1 and 5, and an
LSTM without a forget gate (the 1997 form): gradient norm across time at init and after training, and
validation F1."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.nn import functional as F

from experiments.atis import TrainSettings, load_data, make_tagger, train
from experiments.common import atis_parser, log_every, run_info, save_figure, start, write_json
from experiments.stepping import gradients_across_time
from models.tagger import RecurrentTagger
from training.datamodule import SlotDataModule

VARIANTS: dict[str, float | None] = {"bias 0": 0.0, "bias 1": 1.0, "bias 5": 5.0, "no forget gate": None}
REPORT_DISTANCES = (1, 5, 10, 25, 50, 99)


class NoForgetLSTM(nn.Module):
    """The LSTM without a forget gate (Hochreiter & Schmidhuber 1997): c_t = c_{t-1} + i_t ⊙ g_t,
    h_t = o_t ⊙ tanh(c_t), i.e. the forget gate of Gers et al. (2000) fixed at 1.

    torch's layout minus the forget rows: gates i, g, o stacked in `weight_ih` (3H, I), `weight_hh` (3H, H),
    `bias_ih`, `bias_hh` (3H), initialised U(-1/√H, 1/√H) as `nn.LSTM` does. Batch-first, one direction.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def steps(self, inputs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, T, I) -> ((B, T, H) outputs, [h_1, ..., h_T]); the interface of `experiments.stepping`."""
        batch, steps, _ = inputs.shape
        projected = F.linear(inputs, self.weight_ih, self.bias_ih)  # (B, T, 3H), hoisted out of the loop
        hidden = inputs.new_zeros(batch, self.hidden_size)
        memory = inputs.new_zeros(batch, self.hidden_size)
        hiddens = []
        for t in range(steps):
            gates = projected[:, t] + F.linear(hidden, self.weight_hh, self.bias_hh)
            write, candidate, output = gates.chunk(3, dim=-1)
            memory = memory + torch.sigmoid(write) * torch.tanh(candidate)  # nothing is ever forgotten
            hidden = torch.sigmoid(output) * torch.tanh(memory)
            hiddens.append(hidden)
        return torch.stack(hiddens, dim=1), hiddens

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs, _ = self.steps(inputs)
        return outputs, outputs[:, -1]


def make_variant(data: SlotDataModule, name: str, seed: int) -> RecurrentTagger:
    """The project's LSTM tagger with the forget-gate bias set by `TaggerConfig.forget_bias`, or with
    every LSTM layer swapped for `NoForgetLSTM`."""
    if name != "no forget gate":
        return make_tagger(data, "lstm", seed, forget_bias=VARIANTS[name])
    model = make_tagger(data, "lstm", seed, forget_bias=None)
    torch.manual_seed(seed)
    for layers in (model.encoder.forward_layers, model.encoder.backward_layers):
        for index, layer in enumerate(layers):
            layers[index] = NoForgetLSTM(layer.input_size, layer.hidden_size)
    return model


def stream_of_sentences(model: RecurrentTagger, data: SlotDataModule, steps: int, batch: int) -> torch.Tensor:
    """(batch, steps, E) embeddings of validation sentences laid end to end: a long, real input stream."""
    ids = [i for item in data._encoded("valid") for i in item.token_ids]
    needed = batch * steps
    ids = (ids * (needed // len(ids) + 1))[:needed]
    with torch.no_grad():
        return model.embedding(torch.tensor(ids).view(batch, steps))


def gradient_profile(model: RecurrentTagger, inputs: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """‖∂L/∂h_t‖ of the tagger's first forward layer, for L = u·h_T with a fixed random unit vector u
    (so ‖∂L/∂h_T‖ = 1 and the curve is how much of it reaches t steps back)."""
    layer = model.encoder.forward_layers[0]
    direction = torch.randn(layer.hidden_size, generator=torch.Generator().manual_seed(seed))
    direction = direction / direction.norm()
    model.eval()
    profile = gradients_across_time(layer, inputs, lambda last: last @ direction)
    model.train()
    return profile


def run(out: Path, data_dir: Path, train_limit: int | None, epochs: int, steps: int, seed: int) -> dict:
    data = load_data(data_dir, train_limit)
    generator = torch.Generator().manual_seed(seed)
    runs = []
    for name in VARIANTS:
        model = make_variant(data, name, seed)
        # at init: N(0, 1) inputs, the distribution of nn.Embedding's initial vectors
        random_inputs = torch.randn(32, steps, model.config.embedding_dim, generator=generator)
        at_init = gradient_profile(model, random_inputs, seed)
        settings = TrainSettings(epochs=epochs, optimizer="adam", lr=1e-3, clip="norm", threshold=5.0, seed=seed)
        history = train(model, data, settings)
        trained = gradient_profile(model, stream_of_sentences(model, data, steps, 32), seed)
        runs.append(
            {
                "variant": name,
                "forget_bias": VARIANTS[name],
                **vars(settings),
                **history,
                "grad_h_init": at_init["h"],
                "grad_h_trained": trained["h"],
            }
        )
        print(
            f"{name:<14}: val F1 {history['final_val_f1']:.2f} (per epoch "
            f"{', '.join(f'{f:.1f}' for f in history['epoch_val_f1'])}); ‖∂L/∂h_(T-{steps - 1})‖ init "
            f"{at_init['h'][-1]:.2e}, trained {trained['h'][-1]:.2e}; {history['train_seconds']:.0f} s",
            flush=True,
        )

    colours = {"bias 0": "tab:red", "bias 1": "tab:orange", "bias 5": "tab:green", "no forget gate": "tab:purple"}
    figure, (ax_init, ax_trained, ax_f1) = plt.subplots(1, 3, figsize=(16, 4.2))
    for item in runs:
        colour = colours[item["variant"]]
        ax_init.semilogy(item["grad_h_init"], color=colour, label=item["variant"])
        ax_trained.semilogy(item["grad_h_trained"], color=colour, label=item["variant"])
        ax_f1.plot(
            range(1, len(item["epoch_val_f1"]) + 1),
            item["epoch_val_f1"],
            "o-",
            color=colour,
            label=f"{item['variant']}: {item['final_val_f1']:.1f}",
        )
    for ax, title in (
        (ax_init, "at init, N(0, 1) inputs"),
        (ax_trained, f"after {epochs} epochs, ATIS validation text"),
    ):
        ax.set(xlabel="distance T - t", ylabel="‖∂L/∂h_t‖ (L = u·h_T, ‖u‖ = 1)", title=title)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    ax_f1.set(xlabel="epoch", ylabel="validation slot F1 (%)", title="validation F1")
    ax_f1.grid(True, alpha=0.3)
    ax_f1.legend(fontsize=8)
    subset = f"first {train_limit} training sentences" if train_limit else "all 4,478 training sentences"
    figure.suptitle(
        f"Forget gate: BiLSTM tagger on ATIS ({subset}, {epochs} epochs, Adam 1e-3, clip norm 5, seed {seed}); "
        f"gradients over T = {steps} steps of the forward layer"
    )
    figure.tight_layout()
    save_figure(figure, out / "forget_gate.png")

    for item in runs:
        for phase in ("init", "trained"):
            curve = item[f"grad_h_{phase}"]
            item[f"grad_h_{phase}_at"] = {str(d): curve[d].item() for d in REPORT_DISTANCES if d < len(curve)}
        stride = log_every(len(item["loss"]))
        for key in ("loss", "grad_norm", "grad_max"):
            item[key] = item[key][::stride]
        item["series_stride"] = stride
    return {"train_sentences": len(data.train_examples), "epochs": epochs, "gradient_steps": steps, "runs": runs}


def main(argv: list[str] | None = None) -> dict:
    parser = atis_parser(__doc__, epochs=5)
    parser.add_argument("--steps", type=int, default=100, help="length T of the sequences for the gradient curves")
    args = parser.parse_args(argv)
    if args.tiny:
        args.train_limit, args.epochs, args.steps = args.train_limit or 64, 1, min(args.steps, 12)
    started = start(args)
    result = run(args.out, args.data_dir, args.train_limit, args.epochs, args.steps, args.seed)
    result["run"] = run_info("experiments.forget_gate", args, started)
    write_json(args.out / "forget_gate.json", result)
    return result


if __name__ == "__main__":
    main()
