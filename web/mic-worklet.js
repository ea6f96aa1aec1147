/* AudioWorklet: hands each 128-sample block of the microphone's first channel to the page. */
class EmostreamCapture extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel && channel.length) {
      const copy = new Float32Array(channel);
      this.port.postMessage(copy, [copy.buffer]);
    }
    return true;
  }
}
registerProcessor("emostream-capture", EmostreamCapture);
