"""A run folder for command-line tests, written by the training code's own checkpoint writer:
an untrained model at epoch 1, with one metrics row, and no dataset needed."""
import json

from scratchvae.models import build_vae
from scratchvae.optim import Adam
from scratchvae.runs.checkpoint import save_checkpoint

ROW = dict(epoch="1", train_loss="200.0000", test_loss="201.0000", test_recon="195.0000",
           test_kl="1.0000", seconds="1.5", images_per_second="1000.0")


def untrained_run(folder, model="paper-mlp", dataset="mnist", preprocess="unit"):
    """``folder`` made a run of an untrained ``model`` (z = 2) with config.json and a checkpoint."""
    config = dict(model=model, latent_dim=2, likelihood="bernoulli", beta=1.0, kl="analytic",
                  variance=0.5, seed=0, dataset=dataset, data_dir=None, preprocess=preprocess,
                  dtype="float32")
    vae = build_vae(model, latent_dim=2, seed=0)
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    save_checkpoint(folder / "checkpoint.npz", vae, Adam(vae.params, vae.grads),
                    dict(epoch=1, step=0, loss_sum=0.0), config, [ROW])
    return folder
