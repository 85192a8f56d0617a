"""Deep Learning Tutorial: a simplified LeNet that recognises handwritten digits (MNIST).

The smart-video-workshop's training program, step by step, with two changes that today's Keras
requires or that this project adds:
- `keras.utils.np_utils` is gone from Keras 3: labels are one-hot encoded with
  `keras.utils.to_categorical`;
- the data comes from the project's loader, which reads a local MNIST folder (--data-dir or
  the MNIST_DIR environment variable) when there is no network, else Keras' download.

    cd smart-video-workshop/dl-model-training && python3 Deep_Learning_Tutorial.py

It prints "Accuracy = ...%". The pipeline's `python train/train.py` trains the same network
faster and better; `train/benchmark_training.py` runs both side by side.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
from keras.layers import Conv2D, Dense, Flatten, MaxPooling2D
from keras.models import Sequential

from edgedigits.data import load_mnist
from edgedigits.errors import UserError

parser = argparse.ArgumentParser(description="The workshop's MNIST tutorial")
parser.add_argument("--data-dir", help="local MNIST folder (default: $MNIST_DIR, else download)")
parser.add_argument("--save", help="where to save the trained model (e.g. mnist.keras)")
args = parser.parse_args()

# Step 1: Load the MNIST dataset: 60,000 training and 10,000 test images of 28x28 pixels.
# (The workshop calls keras.datasets.mnist.load_data(); load_mnist does that too when no local
# folder is given, and returns the same uint8 arrays.)
try:
    mnist = load_mnist(args.data_dir)
except UserError as error:
    print(f"Deep_Learning_Tutorial.py: error: {error}", file=sys.stderr)
    sys.exit(2)
(X_train, y_train), (X_test, y_test) = (mnist.x_train, mnist.y_train), (mnist.x_test, mnist.y_test)

# Step 2: Reshape to [samples][width][height][channels] - the network takes one grey channel.
X_train = X_train.reshape(X_train.shape[0], 28, 28, 1).astype("float32")
X_test = X_test.reshape(X_test.shape[0], 28, 28, 1).astype("float32")

# Step 3: Normalise the pixel values from 0-255 to 0-1.
X_train = X_train / 255
X_test = X_test / 255

# Step 4: One-hot encode the outputs: digit 3 becomes [0, 0, 0, 1, 0, 0, 0, 0, 0, 0].
y_train = keras.utils.to_categorical(y_train)
y_test = keras.utils.to_categorical(y_test)
num_classes = y_test.shape[1]


# Step 5: Define the simplified LeNet: a 3x3 convolution with 32 filters, 2x2 max pooling,
# a flatten layer, a fully connected layer of 128 neurons and a softmax output over 10 digits.
def baseline_model():
    model = Sequential()
    model.add(keras.Input(shape=(28, 28, 1)))
    model.add(Conv2D(32, (3, 3), activation="relu"))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Flatten())
    model.add(Dense(128, activation="relu"))
    model.add(Dense(num_classes, activation="softmax"))
    # Compile: categorical cross-entropy loss and the Adam optimiser.
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


# Step 6: Build the model.
model = baseline_model()

# Step 7: Fit the model: 5 epochs, batches of 128 images (validated on the test set, as in
# the workshop).
model.fit(X_train, y_train, validation_data=(X_test, y_test), epochs=5, batch_size=128, verbose=2)

# Step 8: Final evaluation of the model on the test set.
scores = model.evaluate(X_test, y_test, verbose=0)
print("Accuracy = %.2f%%" % (scores[1] * 100))

# Step 9 (optional): save the model, for example for the OpenVINO conversion.
if args.save:
    model.save(args.save)
    print(f"Saved {args.save}")
