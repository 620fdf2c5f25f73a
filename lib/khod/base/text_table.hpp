// The human output of khoctl's reports: titled sections of indented
// "label  value" rows, labels padded to one width so the values line up.
#pragma once

#include <sstream>
#include <string>

namespace khod {

class TextTable {
public:
    explicit TextTable(int label_width) : label_width_(label_width) {}

    void section(const std::string& title) {
        out_ << (first_ ? "" : "\n") << title << '\n';
        first_ = false;
    }
    void row(const std::string& label, const std::string& value) {
        out_ << "  " << label;
        for (int pad = label_width_ - static_cast<int>(label.size()); pad > 0; --pad) out_ << ' ';
        out_ << ' ' << value << '\n';
    }
    void raw(const std::string& line) { out_ << line << '\n'; }
    std::string str() const { return out_.str(); }

private:
    std::ostringstream out_;
    int label_width_;
    bool first_ = true;
};

}  // namespace khod
