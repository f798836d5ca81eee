"""erbench's metrics as Hugging Face `evaluate` modules, one folder each (evaluate.load wants the script named
like its folder); what the three modules share."""

CITATION = """@inproceedings{noukhovitch2023elastic, title={Language Model Alignment with Elastic Reset},
author={Noukhovitch, Michael and Lavoie, Samuel and Strub, Florian and Courville, Aaron},
booktitle={NeurIPS}, year={2023}}"""


def metric_info(description: str, inputs: str, features: dict):
    import datasets
    import evaluate

    return evaluate.MetricInfo(description=description, citation=CITATION, inputs_description=inputs,
                               features=datasets.Features(features))
