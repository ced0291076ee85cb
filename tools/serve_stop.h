// Stop strings for `qgemma serve`: generated text arrives piece by piece (one token's complete
// UTF-8 at a time); a stop string may be split across pieces. StopFilter releases only text that
// can no longer be the beginning of a stop string, so the stop string itself is never sent, and
// ends at the earliest occurrence of any stop string.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qgemma {

class StopFilter {
 public:
  explicit StopFilter(std::vector<std::string> stops) : stops_(std::move(stops)) {
    std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
    for (const std::string& s : stops_) max_len_ = std::max(max_len_, s.size());
  }

  // Appends a piece; returns the text that became safe to send (possibly empty). After a stop
  // string is found (hit() turns true) the text ends before it and further pieces are ignored.
  std::string push(std::string_view piece) {
    if (hit_) return {};
    text_.append(piece);
    size_t first = std::string::npos;
    for (const std::string& s : stops_) first = std::min(first, text_.find(s, sent_));
    if (first != std::string::npos) {
      hit_ = true;
      text_.resize(first);
      return release(first);
    }
    // Hold back the longest suffix that is a proper prefix of some stop string. Such a suffix
    // starts with a stop string's first byte, a UTF-8 lead byte, so the cut never splits a
    // character.
    size_t hold = text_.size();
    const size_t from =
        std::max(sent_, text_.size() > max_len_ ? text_.size() - max_len_ + 1 : size_t{0});
    for (size_t i = from; i < text_.size() && hold == text_.size(); ++i) {
      const std::string_view tail = std::string_view(text_).substr(i);
      for (const std::string& s : stops_) {
        if (tail.size() < s.size() && s.compare(0, tail.size(), tail) == 0) {
          hold = i;
          break;
        }
      }
    }
    return release(hold);
  }

  // End of generation: whatever is still held back (nothing after a hit).
  std::string finish() { return release(text_.size()); }

  bool hit() const { return hit_; }
  const std::string& text() const { return text_; }  // all text so far (cut at a stop string)

 private:
  std::string release(size_t upto) {
    std::string out = text_.substr(sent_, upto - sent_);
    sent_ = upto;
    return out;
  }

  std::vector<std::string> stops_;
  size_t max_len_ = 0;
  std::string text_;
  size_t sent_ = 0;
  bool hit_ = false;
};

}  // namespace qgemma
