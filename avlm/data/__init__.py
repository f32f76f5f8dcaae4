"""Training data: annotation files, chat-template tokenisation with label masking, sampling and collation.

Light at import time (torch and numpy only); transformers is used through the tokenizer object passed in.
"""

from avlm.data.annotations import AnnotationError, AnnotationReport, AnnotationSource, Record, load_annotations
from avlm.data.build import TrainingData, build_data
from avlm.data.conversation import IGNORE_INDEX, BudgetRow, BudgetTotals, token_budget, tokenize_conversation
from avlm.data.dataset import ConversationDataset
from avlm.data.sampler import ModalityMixSampler
from avlm.data.settings import DataConfig
from avlm.processing.collator import collate

__all__ = ["AnnotationError", "AnnotationReport", "AnnotationSource", "Record", "load_annotations", "collate",
           "IGNORE_INDEX", "BudgetRow", "BudgetTotals", "token_budget", "tokenize_conversation",
           "ConversationDataset", "ModalityMixSampler", "DataConfig", "TrainingData", "build_data"]
