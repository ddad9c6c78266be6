"""The MLflow pyfunc that continues prompts with a gpt2lab checkpoint (logged as code by
`mlflow_model.log_checkpoint_model`; MLflow runs this file when it loads the model)."""

from __future__ import annotations

import mlflow
from mlflow.pyfunc import PythonModel


class TextGenerator(PythonModel):
    """Continues each prompt with up to 50 new tokens (sampling settings in `params`)."""

    def load_context(self, context) -> None:
        from model import load_model, load_tokenizer

        folder = context.artifacts["checkpoint"]
        self.model = load_model(folder).eval()
        self.tokenizer = load_tokenizer(folder)

    def predict(self, context, model_input: list[str], params: dict | None = None) -> list[str]:
        from model import SamplingConfig, generate

        params = params or {}
        sampling = SamplingConfig(
            max_new_tokens=int(params.get("max_new_tokens", 50)),
            temperature=float(params.get("temperature", 0.8)),
            top_k=int(params.get("top_k", 40)),
            seed=int(params.get("seed", 0)),
        )
        prompts = [self.tokenizer.encode(text) for text in model_input]
        completions = generate(self.model, prompts, sampling, eot_token=self.tokenizer.eot_token)
        return [self.tokenizer.decode(c.tokens) for c in completions]


mlflow.models.set_model(TextGenerator())
