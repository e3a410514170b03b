"""robopolicy-train-critic task=metaworld dataset=data/push.zarr critic=iql|calql run_dir=runs/push_q"""

from omegaconf import DictConfig

from robopolicy.cli._hydra import hydra_command


@hydra_command("train_critic")
def main(cfg: DictConfig) -> None:
    from robopolicy.value.train import train_critic

    summary = train_critic(cfg)
    print(f"critic trained: step {summary['step']}, loss {summary.get('train/loss', float('nan')):.4f} -> {cfg.run_dir}")


if __name__ == "__main__":
    main()
