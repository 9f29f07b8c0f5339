"""Image classification on the project's trainer, for DCNet's claims: the distortion-type
and level of degraded patches (12 classes, the toolbox's bands), or a user's folder of
class subfolders, or CIFAR-10's / CIFAR-100's python batches; a small CNN whose convolutions are a
setting; FGSM and BIM attacks."""

from .attacks import bim, fgsm, robust_accuracy
from .data import (DISTORTION_CLASSES, ClassificationData, cifar10_batches, cifar100_batches, cifar_folder,
                   distortion_patches, folder_of_classes)
from .network import Classifier
from .training import (CLASSIFIER_KIND, ClassificationSettings, ClassificationTask, load_classifier, load_data,
                       save_classifier, train_classifier)

__all__ = ["DISTORTION_CLASSES", "ClassificationData", "distortion_patches", "folder_of_classes", "cifar10_batches",
           "cifar100_batches", "cifar_folder",
           "Classifier", "fgsm", "bim", "robust_accuracy", "ClassificationSettings", "ClassificationTask", "load_data",
           "train_classifier", "save_classifier", "load_classifier", "CLASSIFIER_KIND"]
